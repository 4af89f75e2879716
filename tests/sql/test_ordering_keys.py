"""Ordering keys are scoped (docs/capture.md, "Ordering keys"): a captured
row's key is its table's scope, `:` and its primary key, so rows of two
tables and emit()'s keys never share a queue on an ordered endpoint; the
scope is the table's name when first tracked and stays through renames and
re-tracks. Both editions."""

import os

import psycopg
import pytest

from support import editions
from support.cluster import connect, q, q1


def keys(db, event_type):
    return [k for (k,) in q(db, "SELECT ordering_key FROM webhook.event_log WHERE event_type = %s ORDER BY id", event_type)]


def test_rows_of_two_tables_and_an_emitted_key_never_share_a_queue(db):
    db.execute("CREATE TABLE reviews (id int PRIMARY KEY, stars int)")
    db.execute("CREATE TABLE coupons (id int PRIMARY KEY, code text)")
    db.execute("SELECT webhook.track('reviews')")
    db.execute("SELECT webhook.track('coupons')")
    db.execute("SELECT webhook.create_endpoint('https://example.com/hook', '{*}', ordered => true)")
    db.execute("INSERT INTO reviews VALUES (1241, 1)")
    db.execute("INSERT INTO coupons VALUES (1241, 'A')")
    db.execute("SELECT webhook.emit('app.note', '{}', '1241')")
    db.execute("UPDATE reviews SET stars = 2")
    assert q(db, "SELECT event_type, ordering_key FROM webhook.event_log ORDER BY id") == [
        ("reviews.insert", "public.reviews:1241"),
        ("coupons.insert", "public.coupons:1241"),
        ("app.note", "1241"),
        ("reviews.update", "public.reviews:1241"),
    ]
    q1(db, "SELECT webhook.route()")
    # A failing review holds back only the review: three heads claimable.
    claimed = q(db, "SELECT e.event_type FROM webhook.claim(10, '1 minute', 'w') k "
                    "JOIN webhook.event_log e ON e.id = k.event_id ORDER BY 1")
    assert claimed == [("app.note",), ("coupons.insert",), ("reviews.insert",)]


def test_the_scope_stays_through_a_rename_and_a_retrack(db):
    db.execute("CREATE SCHEMA shop")
    db.execute("CREATE TABLE shop.orders (id int PRIMARY KEY, status text, note text)")
    db.execute("SELECT webhook.track('shop.orders')")
    db.execute("INSERT INTO shop.orders VALUES (1, 'new', '')")
    db.execute("ALTER TABLE shop.orders RENAME TO purchases")
    db.execute("UPDATE shop.purchases SET status = 'paid'")
    # A migration changes what is captured: the queue is the same.
    db.execute("SELECT webhook.track('shop.purchases', event_prefix => 'orders', columns => '{id,status}')")
    db.execute("UPDATE shop.purchases SET status = 'shipped'")
    db.execute("ALTER TABLE shop.purchases SET SCHEMA public")
    db.execute("DELETE FROM public.purchases")
    assert keys(db, "orders.insert") + keys(db, "orders.update") + keys(db, "orders.delete") == ["shop.orders:1"] * 4
    # The payload names the table as it is now.
    assert q1(db, "SELECT body::json->'data'->>'table' FROM webhook.event_log ORDER BY id DESC LIMIT 1") == "public.purchases"
    # tracked_tables shows the scope as the triggers' last argument.
    assert all(t.endswith("'shop.orders')") for t in q1(db, "SELECT triggers FROM webhook.tracked_tables"))


def test_a_new_table_under_a_renamed_tables_name_gets_a_scope_of_its_own(db):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('orders')")
    db.execute("ALTER TABLE orders RENAME TO orders_2025")
    db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('orders', event_prefix => 'orders_new')")
    db.execute("INSERT INTO orders_2025 VALUES (1)")
    db.execute("INSERT INTO orders VALUES (1)")
    oid = q1(db, "SELECT 'public.orders'::regclass::oid")
    assert keys(db, "orders.insert") == ["public.orders:1"]
    assert keys(db, "orders_new.insert") == [f"public.orders#{oid}:1"]


def test_partitions_take_their_tables_scope(db):
    db.execute("CREATE TABLE metrics (day date, id int, v int, PRIMARY KEY (day, id)) PARTITION BY RANGE (day)")
    db.execute("CREATE TABLE metrics_2026 PARTITION OF metrics FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    db.execute("SELECT webhook.track('metrics')")
    db.execute("CREATE TABLE metrics_2027 PARTITION OF metrics FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    db.execute("INSERT INTO metrics VALUES ('2026-05-01', 1, 1), ('2027-05-01', 1, 1)")
    assert keys(db, "metrics.insert") == ["public.metrics:2026-05-01,1", "public.metrics:2027-05-01,1"]


def test_a_database_not_in_utf8_cannot_be_tracked(pg_cluster):
    """Payloads are JSON, which is UTF-8: track() refuses a database in
    another encoding with the fix, rather than writing its text mangled."""
    name = f"latin1_{os.getpid()}"
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    try:
        with connect(name) as db:
            if editions.EDITION == "portable":
                # Its install script is UTF-8 text: webhookd install says so first.
                with pytest.raises(RuntimeError, match="encoding is LATIN1; pg_webhook needs a database created WITH ENCODING 'UTF8'"):
                    editions.install(db, name)
                return
            editions.install(db, name)
            db.execute('CREATE TABLE "bücher" (id int PRIMARY KEY, title text)')
            with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
                db.execute("""SELECT webhook.track('"bücher"')""")
            assert "LATIN1" in e.value.diag.message_primary and "UTF8" in e.value.diag.message_hint
            assert q1(db, "SELECT count(*) FROM webhook.tracked_tables") == 0
    finally:
        with connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
