"""The pgbouncer fixture (tests/sql/conftest.py): PgBouncer 1.24 in front of the
test cluster, in session and transaction mode. Captures made through it
are the application's own transactions: a rolled-back one leaves nothing,
and prepared statements (which PgBouncer 1.24 tracks in transaction mode)
capture like any other."""

import psycopg
import pytest

from support.cluster import q1


@pytest.fixture
def orders(db):
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric NOT NULL)")
    db.execute("SELECT webhook.track('orders')")
    return db


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_captures_through_pgbouncer_are_the_applications_transactions(orders, dbname, pgbouncer, mode):
    bouncer = pgbouncer(mode)
    with psycopg.connect(bouncer.dsn(dbname), prepare_threshold=0) as app:
        # Prepared on the first execution: in transaction mode each may run
        # on another server connection, which PgBouncer prepares it on.
        for total in range(1, 21):
            with app.transaction():
                app.execute("INSERT INTO orders (total) VALUES (%s)", (total,))
        with pytest.raises(psycopg.errors.DivisionByZero):
            with app.transaction():
                app.execute("INSERT INTO orders (total) VALUES (%s)", (99,))
                app.execute("SELECT 1 / 0")
    assert q1(orders, "SELECT count(*) FROM webhook.event_log WHERE event_type = 'orders.insert'") == 20
    assert q1(orders, "SELECT count(*) FROM webhook.event_log WHERE body::jsonb->'data'->'new'->>'total' = '99'") == 0
    show = bouncer.output()
    assert "FATAL" not in show and "ERROR" not in show, show
