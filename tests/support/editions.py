"""The two editions of pg_webhook a test database can have: `native` (the
extension and its library) or `portable` (scripts/portable.py: the same SQL
API in SQL and PL/pgSQL, no library). PGWEBHOOK_EDITION picks the one the
`db` fixture installs (default native)."""

import functools
import os
import sys

from support.cluster import ROOT

EDITION = os.environ.get("PGWEBHOOK_EDITION", "native")
if EDITION not in ("native", "portable"):
    raise SystemExit(f"PGWEBHOOK_EDITION={EDITION!r}: native or portable")


@functools.cache
def portable_sql():
    sys.path.insert(0, str(ROOT / "scripts"))
    import portable

    return portable.edition()


def install(conn, dbname, edition=EDITION):
    """Install `edition` into the database `conn` is connected to, with
    http:// endpoint URLs allowed (the receivers of the tests are plain
    HTTP on 127.0.0.1)."""
    if edition == "native":
        conn.execute("CREATE EXTENSION pg_webhook")
        conn.execute(f"ALTER DATABASE {dbname} SET webhook.allow_http = on")
    else:
        conn.execute("CREATE EXTENSION pgcrypto")
        conn.execute(portable_sql())
        conn.execute("UPDATE webhook.portable_settings SET allow_http = true")


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
