"""The webhookd tier: `webhookd run` (and its other commands) against the
test cluster and real receivers on 127.0.0.1: delivery, retries, egress,
TLS, metrics, traces, upgrades with deliveries in flight, PgBouncer. It
needs what the SQL tier needs and a release build of webhookd (`make
webhookd`, or WEBHOOKD=path); without one every test here fails saying
so. test_through_pgbouncer.py also needs the PostgreSQL 17 root, which carries
PgBouncer."""

import pytest

from support.webhookd import require_webhookd


@pytest.fixture(autouse=True)
def webhookd_build():
    require_webhookd()
