"""The two editions of pg_webhook a test database can have: `native` (the
extension and its library) or `portable` (the same SQL API in SQL and
PL/pgSQL, no library, installed by `webhookd install` as the database's
owner, an ordinary role). PGWEBHOOK_EDITION picks the one the `db` fixture
installs (default native)."""

import os
import subprocess

import psycopg

from support.cluster import PORT, dsn
from support.webhookd import WEBHOOKD, require_webhookd

EDITION = os.environ.get("PGWEBHOOK_EDITION", "native")
if EDITION not in ("native", "portable"):
    raise SystemExit(f"PGWEBHOOK_EDITION={EDITION!r}: native or portable")

# The role a managed service gives the application: it owns its database
# and nothing else (no superuser, no CREATEROLE, no CREATEDB).
OWNER = "pgwh_owner"


def owner_url(dbname):
    return f"postgres://{OWNER}@127.0.0.1:{PORT}/{dbname}"


def create_owner():
    """The owner role, once per cluster."""
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN "
                  f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; END IF; END $$")


def portable_install(dbname, *args, url=None):
    """`webhookd install` into `dbname` as its owner (or as whoever `url`
    names); the finished process."""
    require_webhookd()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([str(WEBHOOKD), "install", "--database-url", url or owner_url(dbname), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def install(conn, dbname, edition=EDITION):
    """Install `edition` into the database `conn` is connected to, with
    http:// endpoint URLs allowed (the receivers of the tests are plain
    HTTP on 127.0.0.1). The portable edition is installed by its owner, a
    role that is not a superuser; the database is handed to it first."""
    if edition == "native":
        conn.execute("CREATE EXTENSION pg_webhook")
        conn.execute(f"ALTER DATABASE {dbname} SET webhook.allow_http = on")
    else:
        create_owner()
        conn.execute(f"ALTER DATABASE {dbname} OWNER TO {OWNER}")
        done = portable_install(dbname)
        if done.returncode != 0:
            raise RuntimeError(f"webhookd install failed ({done.returncode}): {done.stderr}{done.stdout}")
        with psycopg.connect(owner_url(dbname), autocommit=True) as owner:
            owner.execute("UPDATE webhook.portable_settings SET allow_http = true")


def raise_max_event_size(conn, size, edition=EDITION):
    """Let this test's events be up to `size` bytes: in the native edition
    a superuser's SET for the session, in the portable one the owner's
    setting in webhook.portable_settings (the whole database's)."""
    if edition == "native":
        conn.execute(f"SET webhook.max_event_size = {int(size)}")
    else:
        conn.execute("UPDATE webhook.portable_settings SET max_event_size = %s", (int(size),))


def set_allow_http(conn, allow):
    """Allow or refuse http:// endpoint URLs: in the native edition for
    this session (a superuser's SET), in the portable one for the database
    (the owner's setting)."""
    if EDITION == "native":
        conn.execute(f"SET webhook.allow_http = {'on' if allow else 'off'}")
    else:
        conn.execute("UPDATE webhook.portable_settings SET allow_http = %s", (bool(allow),))
