"""webhookd's database sessions: what it relies on (READ COMMITTED, writable,
its own timeouts, a fixed search_path) it sets itself, whatever the database
or role defaults are; and every database error it logs says what the server
said, not just "db error"."""

import subprocess
import time

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, dsn, q1, wait_for
from support.webhookd import WEBHOOKD

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


def role(db, name):
    # Roles belong to the cluster, which outlives each test's database.
    db.execute(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def url_as(dbname, name, query=""):
    return dsn(dbname).replace("postgres@", f"{name}@") + query


def problems(log):
    return [line for line in log.splitlines() if "WARN" in line or "ERROR" in line]


def test_a_database_and_role_whose_defaults_break_sessions_still_get_every_event_delivered_once(
    db, dbname, receiver, webhookd
):
    r = receiver()
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    db.execute("SELECT webhook.create_endpoint(%s, '{orders.*}', %s)", (r.url, SECRET))
    name = "webhookd_sessions"
    role(db, name)
    db.execute(f"SELECT webhook.grant_dispatcher('{name}')")
    db.execute("INSERT INTO orders (customer) SELECT 'before ' || g FROM generate_series(1, 20) g")

    # For new sessions only: `db` keeps the settings it started with, so it
    # can still write below.
    for setting in [
        "default_transaction_isolation = 'serializable'",
        "default_transaction_read_only = on",
        "statement_timeout = '50ms'",
        "lock_timeout = '1ms'",
        "idle_in_transaction_session_timeout = '1ms'",
        "search_path = 'nowhere'",
    ]:
        db.execute(f"ALTER DATABASE {dbname} SET {setting}")
    # The role's own, in this database, win over the database's.
    db.execute(f"ALTER ROLE {name} IN DATABASE {dbname} SET default_transaction_isolation = 'repeatable read'")
    db.execute(f"ALTER ROLE {name} IN DATABASE {dbname} SET statement_timeout = '1ms'")

    # What a session of the role gets by default, and that it cannot claim.
    with psycopg.connect(url_as(dbname, name), autocommit=True, options="-c statement_timeout=0") as s:
        shown = ["default_transaction_isolation", "transaction_read_only", "lock_timeout", "search_path"]
        seen = {k: q1(s, f"SHOW {k}") for k in shown}
        assert seen == {
            "default_transaction_isolation": "repeatable read",
            "transaction_read_only": "on",
            "lock_timeout": "1ms",
            "search_path": "nowhere",
        }
    with psycopg.connect(url_as(dbname, name), autocommit=True) as s:
        with pytest.raises(psycopg.Error):
            s.execute("SELECT * FROM webhook.claim()")

    # The user's own startup options still apply beside webhookd's.
    w = webhookd(*FAST, env={"DATABASE_URL": url_as(dbname, name, "?options=-c%20geqo%3Doff")})
    wait_for(lambda: r.count() >= 20, 30, what="the events committed before webhookd started")
    for i in range(20):
        db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"after {i}",))
    wait_for(lambda: r.count() >= 40, 30, what="the events committed while webhookd ran (LISTEN)")
    time.sleep(0.5)

    assert r.count() == 40
    assert len(set(r.ids())) == 40
    for req in r.requests:
        Webhook(SECRET).verify(req["body"], req["headers"])
    # Recorded, too: the recorder's session could write.
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 40)
    assert q1(db, "SELECT count(*) FROM webhook.attempts") == 40
    assert problems(w.output()) == [], w.output()

    status = subprocess.run(
        [str(WEBHOOKD), "status", "--database-url", url_as(dbname, name)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert status.returncode == 0, status.stderr
    assert "backlog: 0 pending" in status.stdout


def test_a_dispatcher_role_without_its_grants_is_told_so_in_the_servers_words(db, dbname, webhookd):
    name = "webhookd_ungranted"
    role(db, name)
    # The schema, as a half-done setup gives it, but not
    # webhook.grant_dispatcher(): claim() itself is refused.
    db.execute(f"GRANT USAGE ON SCHEMA webhook TO {name}")
    w = webhookd(*FAST, env={"DATABASE_URL": url_as(dbname, name)})
    wait_for(lambda: "permission denied for function claim" in w.output(), 20, what="the server's message in the log")
    assert "42501" in w.output()
    assert w.proc.poll() is None, "webhookd keeps retrying: a grant may come"

    status = subprocess.run(
        [str(WEBHOOKD), "status", "--database-url", url_as(dbname, name)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert status.returncode != 0
    assert "SQLSTATE 42501: permission denied for view deliveries" in status.stderr, status.stderr
