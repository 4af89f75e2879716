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

import pytest

from support.pgbouncer import PgBouncer


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
