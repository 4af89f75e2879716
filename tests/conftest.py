"""The fixtures every tier shares: a throwaway PostgreSQL cluster, one
fresh database per test, real `webhookd` processes and real HTTP
receivers on 127.0.0.1. What they are made of is the support package
(tests/support/); each tier's own conftest.py says what that tier needs."""

import os

import psycopg
import pytest

from support import editions
from support.cluster import PORT, cluster, db_counter, dsn
from support.console import Console
from support.pgbouncer import PgBouncer
from support.receivers import Receiver
from support.upgrade import install_released_scripts
from support.webhookd import Webhookd


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "version_independent: what it tests is webhookd's own side (HTTP, TLS, the console, "
        "containers' faults), which no PostgreSQL version changes; `make test` runs it on the first "
        "version of PG_VERSIONS only (`-m 'not version_independent'` on the others, reported as deselected)",
    )
    config.addinivalue_line(
        "markers",
        "native_only(why): checks what only the native edition has (why says what); "
        "skipped, saying why, when PGWEBHOOK_EDITION=portable",
    )


def pytest_runtest_setup(item):
    only = item.get_closest_marker("native_only")
    if only and editions.EDITION != "native":
        pytest.skip(f"native edition only: {only.args[0]}")


@pytest.fixture(scope="session")
def pg_cluster():
    cluster("start", str(PORT), "max_connections = 300")
    yield PORT
    cluster("stop")


@pytest.fixture
def dbname(pg_cluster):
    name = f"t{os.getpid()}_{next(db_counter)}"
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(name), autocommit=True) as c:
        editions.install(c, name)
    yield name
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(dbname):
    """An autocommit connection to a fresh database with pg_webhook (the
    edition PGWEBHOOK_EDITION names: support/editions.py)."""
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        yield c


@pytest.fixture
def pgbouncer(pg_cluster):
    """Starts PgBouncers: `pgbouncer("transaction")` (or session,
    statement; keywords as PgBouncer's) returns a running one; all are
    stopped after the test."""
    started = []

    def start(mode="transaction", **kw):
        b = PgBouncer(mode, **kw)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def receiver():
    made = []

    def make(behaviour=None, port=0, tls=None, client_ca=None):
        r = Receiver(behaviour, port, tls, client_ca)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def webhookd(dbname):
    started = []

    def start(*args, db=None, env=None):
        w = Webhookd(db or dbname, *args, env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def console(dbname):
    c = Console(dbname)
    yield c
    c.stop()


@pytest.fixture(scope="session")
def released_scripts():
    return install_released_scripts()


@pytest.fixture
def new_database(pg_cluster, released_scripts):
    """Makes empty databases (no extension yet; http:// endpoints allowed)
    and drops them after the test; the frozen scripts of earlier releases
    are installed, so a database can be created at one and upgraded."""
    made = []

    def make(tag):
        name = f"u{os.getpid()}_{next(db_counter)}_{tag}"
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")
            c.execute(f"CREATE DATABASE {name}")
            c.execute(f"ALTER DATABASE {name} SET webhook.allow_http = on")
        made.append(name)
        return name

    yield make
    with psycopg.connect(dsn(), autocommit=True) as c:
        for name in made:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
