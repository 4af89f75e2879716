"""The throwaway PostgreSQL cluster under test, its connections and the
small helpers every tier uses to query it and wait on it."""

import itertools
import os
import select
import socket
import subprocess
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent.parent
# The PostgreSQL major version under test (`make e2e-test PG=17` sets it):
# the cluster's server and the extension installed into it. 15 is the
# host's own; 17 and 18 run in their Debian roots (scripts/pg-root.sh).
PG_MAJOR = os.environ.get("PGWEBHOOK_PG", "15")
# Both can be overridden, so two suites (two checkouts, or a focused run
# beside the full one) can run at once without sharing a cluster.
CLUSTER_DIR = Path(os.environ.get("PGWEBHOOK_TEST_CLUSTER", ROOT / "target" / f"test-cluster-pg{PG_MAJOR}"))
# Fixed ports stay below the ephemeral range (32768+): a client socket of
# the suite itself could otherwise hold the port a server needs.
PORT = int(os.environ.get("PGWEBHOOK_TEST_PORT", "25439"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# The databases this process creates, numbered.
db_counter = itertools.count()


def free_port():
    """A loopback port free now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn(dbname="postgres"):
    return f"postgresql://postgres@127.0.0.1:{PORT}/{dbname}"


def pg_root():
    """The root the PostgreSQL under test runs in, as this host sees it
    (/ for the host's own version)."""
    out = subprocess.run([str(ROOT / "scripts" / "pg-root.sh"), PG_MAJOR, "path"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def pg_config(option):
    """`pg_config option` of the PostgreSQL under test (`--sharedir`,
    `--pkglibdir`, ...): a path as its root sees it."""
    return subprocess.run(
        [str(ROOT / "scripts" / "pg-root.sh"), PG_MAJOR, "run", f"/usr/lib/postgresql/{PG_MAJOR}/bin/pg_config", option],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def pg_dir(option):
    """A directory of the PostgreSQL under test (pg_config's `option`) as
    this host sees it: inside the version's root."""
    return pg_root() / pg_config(option).lstrip("/")


def cluster(cmd, *args):
    subprocess.run([str(ROOT / "scripts" / "cluster.sh"), cmd, str(CLUSTER_DIR), *args], check=True)


def connect(dbname, **kw):
    return psycopg.connect(dsn(dbname), autocommit=True, **kw)


def role(db, name):
    """Creates the login role `name` unless it exists (roles are the cluster's, not a database's)."""
    db.execute(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def as_role(dbname, name):
    """An autocommit connection to `dbname` as the role `name`."""
    return psycopg.connect(dsn(dbname).replace("postgres@", f"{name}@"), autocommit=True)


def q(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def q1(conn, sql, *args):
    row = conn.execute(sql, args).fetchone()
    return row[0] if row is not None and len(row) == 1 else row


def wait_for(predicate, timeout=20.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def next_notification(conn, timeout=10.0):
    """The first notification `conn` (which LISTENs) receives, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([conn.fileno()], [], [], 0.5)
        for n in conn.notifies(timeout=0.1, stop_after=1):
            return n
    return None
