"""The SQL tier: the extension's SQL API, capture, privileges and upgrades
through plain connections, and the isolation specs (tests/sql/isolation/).
It needs the cluster of the PostgreSQL under test with the extension
installed (`make install package`, or `make install PG=N` for a root's);
test_pgbouncer.py also needs the PostgreSQL 17 root (scripts/pg-root.sh),
which carries PgBouncer, and test_isolation.py the version's
pg_isolation_regress (PostgreSQL's client package ships it; the test is
skipped, saying so, without it). No webhookd build and no Docker: a test
here asking for a webhookd or a console fails, as it belongs to another
tier."""

import psycopg
import pytest

from support import editions
from support.cluster import connect, dsn


def _not_in_this_tier(what, tier):
    pytest.fail(
        f"the SQL tier starts no {what}: this test belongs in tests/{tier}/ (tests/sql needs no webhookd build)",
        pytrace=False,
    )


@pytest.fixture
def webhookd():
    _not_in_this_tier("webhookd", "webhookd")


@pytest.fixture
def console():
    _not_in_this_tier("console", "console")


@pytest.fixture
def portable_db(pg_cluster, dbname):
    """A database with the portable edition, beside the one of `db` (which
    the tests comparing the two need native); pg_webhook's library is never
    loaded in it. Events as large as the native side's limit allows."""
    name = f"{dbname}_portable"
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        with connect(name) as c:
            editions.install(c, name, "portable")
            editions.raise_max_event_size(c, 1073741823, "portable")
            yield c
    finally:
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
