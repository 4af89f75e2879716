"""Maintenance without events (docs/capture.md, "Backfills"):
webhook.suspend_capture() stops capture for the rest of its own
transaction only, is granted to trackers and managers and to nobody else,
is undone by a rolled-back savepoint, and leaves an operational event;
writers in other sessions meanwhile are captured as always. Both editions."""

import json
import threading

import psycopg
import pytest

from support.cluster import as_role, q, q1, role


@pytest.fixture
def shop(db, dbname):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric, note text)")
    db.execute("INSERT INTO orders SELECT g, g, '' FROM generate_series(1, 100) g")
    db.execute("SELECT webhook.track('orders')")
    for name, grant in (("backfiller", "grant_tracker"), ("ops", "grant_manager"), ("app_writer", None)):
        role(db, name)
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO {name}")
        if grant:
            db.execute(f"SELECT webhook.{grant}('{name}')")
    return db


def events(db):
    return q(db, "SELECT event_type, ordering_key FROM webhook.event_log ORDER BY id")


@pytest.mark.parametrize("who", ["backfiller", "ops"])
def test_a_backfill_sends_nothing_while_other_writers_are_captured(shop, dbname, who):
    db = shop
    started, written = threading.Event(), threading.Event()

    def other_writer():
        # Writes while the backfill's transaction is open and suspended.
        started.wait(10)
        with as_role(dbname, "app_writer") as w:
            w.execute("INSERT INTO orders VALUES (1000, 5, 'during')")
            w.execute("UPDATE orders SET note = 'touched by the app' WHERE id = 7")
        written.set()

    t = threading.Thread(target=other_writer)
    t.start()
    with as_role(dbname, who) as m:
        with m.transaction():
            m.execute("SELECT webhook.suspend_capture()")
            m.execute("UPDATE orders SET total = total * 2 WHERE id <> 7")
            started.set()
            assert written.wait(10)
            m.execute("INSERT INTO orders VALUES (1001, 1, 'backfilled')")
        t.join()
        # The next transaction is captured again.
        m.execute("UPDATE orders SET note = 'after' WHERE id = 1")
    assert events(db) == [
        ("webhook.capture.suspended", None),
        ("orders.insert", "public.orders:1000"),
        ("orders.update", "public.orders:7"),
        ("orders.update", "public.orders:1"),
    ]
    data = json.loads(q1(db, "SELECT body FROM webhook.event_log WHERE event_type = 'webhook.capture.suspended'"))["data"]
    assert data["role"] == who and int(data["transaction"]) > 0


def test_a_plain_writer_cannot_suspend_capture_nor_forge_the_switch(shop, dbname):
    with as_role(dbname, "app_writer") as w:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("SELECT webhook.suspend_capture()")  # no USAGE on schema webhook
    shop.execute("GRANT USAGE ON SCHEMA webhook TO app_writer")
    with as_role(dbname, "app_writer") as w:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            w.execute("SELECT webhook.suspend_capture()")
        assert "grant_tracker('app_writer')" in e.value.diag.message_hint
        for sql in ("SELECT webhook._suspend_capture(true)", "SELECT webhook._capture_switched('webhook.capture.resumed')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                w.execute(sql)
        with w.transaction():
            # What the portable edition's trigger reads first: a hint, not the switch.
            w.execute("SET LOCAL webhook.capture_suspended = on")
            w.execute("UPDATE orders SET note = 'still captured' WHERE id = 3")
    assert events(shop) == [("orders.update", "public.orders:3")]


def test_a_savepoint_rolled_back_undoes_the_suspension_and_resume_ends_it(shop, dbname):
    with as_role(dbname, "backfiller") as m:
        with m.transaction():
            try:
                with m.transaction():
                    m.execute("SELECT webhook.suspend_capture()")
                    m.execute("UPDATE orders SET note = 'rolled back' WHERE id = 1")
                    raise RuntimeError("roll back to the savepoint")
            except RuntimeError:
                pass
            m.execute("UPDATE orders SET note = 'captured' WHERE id = 2")
            m.execute("SELECT webhook.suspend_capture()")
            m.execute("UPDATE orders SET note = 'not captured' WHERE id = 3")
            m.execute("SELECT webhook.resume_capture()")
            m.execute("UPDATE orders SET note = 'captured again' WHERE id = 4")
        try:
            with m.transaction():
                m.execute("SELECT webhook.suspend_capture()")
                m.execute("UPDATE orders SET note = 'rolled back too' WHERE id = 5")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert events(shop) == [
        ("orders.update", "public.orders:2"),
        ("webhook.capture.suspended", None),
        ("webhook.capture.resumed", None),
        ("orders.update", "public.orders:4"),
    ]
