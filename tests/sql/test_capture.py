"""Capture into the outbox: commit semantics, payloads, configuration, bad input."""

import json
import select
import time

import psycopg
import pytest

from support.cluster import connect, q, q1

ORDERS = """
CREATE TYPE status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer    text NOT NULL,
    total       numeric(20, 2),
    placed_at   timestamptz NOT NULL DEFAULT now(),
    status      status NOT NULL DEFAULT 'new',
    items       jsonb,
    tags        text[],
    ref         uuid,
    note        text,
    receipt     bytea
);
"""


def events(db, since=0):
    return [
        (r[0], r[1], json.loads(r[2]))
        for r in q(db, "SELECT id, event_type, body FROM webhook.event_log WHERE id > %s ORDER BY id", since)
    ]


@pytest.fixture
def shop(db):
    db.execute(ORDERS)
    db.execute("SELECT webhook.track('orders')")
    return db


def test_insert_update_delete_make_exact_events(shop):
    db = shop
    db.execute(
        """INSERT INTO orders (customer, total, placed_at, items, tags, ref, note, receipt)
           VALUES ('Zoë "Z" Ünal', 12345678901234.99, '2026-01-02 03:04:05.678+02',
                   '{"sku": "A-1", "qty": 2, "price": 0.1}', '{gift,"two words",NULL}',
                   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', E'line1\\nline2 \\u2603 😀', '\\xdeadbeef')"""
    )
    db.execute("UPDATE orders SET status = 'paid', total = 1.10 WHERE id = 1")
    db.execute("DELETE FROM orders WHERE id = 1")
    evs = events(db)
    assert [e[1] for e in evs] == ["orders.insert", "orders.update", "orders.delete"]
    ins = evs[0][2]
    assert set(ins) == {"type", "timestamp", "data"}
    assert ins["type"] == "orders.insert"
    assert ins["timestamp"].endswith("Z") and "T" in ins["timestamp"]
    assert ins["data"]["table"] == "public.orders"
    assert ins["data"]["op"] == "insert"
    assert ins["data"]["old"] is None
    new = ins["data"]["new"]
    assert new == {
        "id": 1,
        "customer": 'Zoë "Z" Ünal',
        "total": 12345678901234.99,
        "placed_at": "2026-01-02T01:04:05.678000Z",
        "status": "new",
        "items": {"sku": "A-1", "qty": 2, "price": 0.1},
        "tags": ["gift", "two words", None],
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "note": "line1\nline2 \u2603 😀",
        "receipt": "3q2+7w==",
    }
    # numeric keeps every digit: check the raw text, not a float.
    raw = q1(db, "SELECT body FROM webhook.event_log WHERE id = %s", evs[0][0])
    assert '"total":12345678901234.99' in raw
    upd = evs[1][2]["data"]
    assert upd["op"] == "update"
    assert upd["old"]["status"] == "new" and upd["new"]["status"] == "paid"
    assert '"total":1.10' in q1(db, "SELECT body FROM webhook.event_log WHERE id = %s", evs[1][0])
    dele = evs[2][2]["data"]
    assert dele["new"] is None and dele["old"]["id"] == 1
    # The ordering key is its table's name, `:` and the primary key's text.
    assert [r[0] for r in q(db, "SELECT ordering_key FROM webhook.event_log ORDER BY id")] == ["public.orders:1"] * 3
    # The events view exposes the payload as jsonb.
    assert q1(db, "SELECT payload->'data'->>'op' FROM webhook.events ORDER BY id LIMIT 1") == "insert"


def test_special_values_serialize_faithfully(db):
    db.execute(
        """CREATE TABLE odd (id int PRIMARY KEY, f float8, n numeric, d date, ts timestamp, t time,
                             m int[][], iv interval, j json, b boolean, big bigint)"""
    )
    db.execute("SELECT webhook.track('odd')")
    db.execute(
        """INSERT INTO odd VALUES
           (1, 'NaN', 'Infinity', 'infinity', '1999-12-31 23:59:59.5', '12:00:01', '{{1,2},{3,4}}',
            '1 day 02:00', '{"a":[1,2]}', true, 9223372036854775807),
           (2, 1e-300, '-0.000000000000000000000000001', '0044-03-15 BC', NULL, NULL, '{}', NULL, 'null', false, -1)"""
    )
    rows = [json.loads(b)["data"]["new"] for (b,) in q(db, "SELECT body FROM webhook.event_log ORDER BY id")]
    assert rows[0]["f"] == "NaN" and rows[0]["n"] == "Infinity" and rows[0]["d"] == "infinity"
    assert rows[0]["ts"] == "1999-12-31T23:59:59.500000" and rows[0]["t"] == "12:00:01.000000"
    assert rows[0]["m"] == [[1, 2], [3, 4]]
    assert rows[0]["iv"] == "P1DT2H"
    assert rows[0]["j"] == {"a": [1, 2]} and rows[0]["b"] is True
    assert rows[0]["big"] == 9223372036854775807
    assert rows[1]["f"] == 1e-300 and rows[1]["m"] == [] and rows[1]["j"] is None
    assert rows[1]["d"] == "-0043-03-15"
    raw = q1(db, "SELECT body FROM webhook.event_log WHERE body LIKE '%%\"id\":2%%'")
    assert '"n":-0.000000000000000000000000001' in raw


def test_rollback_and_savepoints_leave_nothing(shop):
    db = shop
    with db.transaction():
        db.execute("INSERT INTO orders (customer) VALUES ('kept 1')")
        try:
            with db.transaction():
                db.execute("INSERT INTO orders (customer) VALUES ('rolled back in savepoint')")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
        db.execute("INSERT INTO orders (customer) VALUES ('kept 2')")
    try:
        with db.transaction():
            db.execute("INSERT INTO orders (customer) VALUES ('rolled back')")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    customers = [e[2]["data"]["new"]["customer"] for e in events(db)]
    assert customers == ["kept 1", "kept 2"]
    # A PL/pgSQL exception block inside a statement (a subtransaction that
    # aborts mid-statement) keeps the outer statement's events.
    db.execute(
        """DO $$ BEGIN
             INSERT INTO orders (customer) VALUES ('outer');
             BEGIN
               INSERT INTO orders (customer) VALUES ('inner');
               RAISE EXCEPTION 'boom';
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
           END $$"""
    )
    customers = [e[2]["data"]["new"]["customer"] for e in events(db)]
    assert customers == ["kept 1", "kept 2", "outer"]


def test_columns_and_condition(db):
    db.execute("CREATE TABLE reviews (id int PRIMARY KEY, product text, rating int, body text, meta json)")
    db.execute(
        "SELECT webhook.track('reviews', '{insert,update}', 'review', 'NEW.rating <= 2', '{id,rating,meta}')"
    )
    db.execute("INSERT INTO reviews VALUES (1, 'mug', 5, 'great', '{}'), (2, 'mug', 1, 'broken', '{}')")
    db.execute("UPDATE reviews SET body = 'still broken' WHERE id = 2")  # untracked column: nothing
    db.execute("UPDATE reviews SET meta = '{\"x\": 1}' WHERE id = 2")  # json column: compared as text
    db.execute("UPDATE reviews SET rating = 2 WHERE id = 2")
    db.execute("UPDATE reviews SET rating = 4 WHERE id = 2")  # condition false: nothing
    evs = events(db)
    assert [e[1] for e in evs] == ["review.insert", "review.update", "review.update"]
    assert evs[0][2]["data"]["new"] == {"id": 2, "rating": 1, "meta": {}}
    assert evs[2][2]["data"]["old"] == {"id": 2, "rating": 1, "meta": {"x": 1}}
    # Calling track() again with the same prefix replaces the configuration.
    db.execute("SELECT webhook.track('reviews', '{delete}', 'review')")
    db.execute("INSERT INTO reviews VALUES (3, 'cup', 1, 'meh', NULL)")
    db.execute("DELETE FROM reviews WHERE id = 3")
    assert [e[1] for e in events(db, evs[-1][0])] == ["review.delete"]
    assert q(db, "SELECT relation::text, event_prefix, events FROM webhook.tracked_tables") == [
        ("reviews", "review", ["delete"])
    ]


def test_one_table_under_two_prefixes(db):
    db.execute("CREATE TABLE reviews (id int PRIMARY KEY, rating int)")
    db.execute("SELECT webhook.track('reviews', '{insert}')")
    db.execute("SELECT webhook.track('reviews', '{insert}', 'support.low_rating', 'NEW.rating <= 2')")
    db.execute("INSERT INTO reviews VALUES (1, 5), (2, 1)")
    got = q(db, "SELECT event_type, ordering_key FROM webhook.event_log ORDER BY event_type, ordering_key")
    assert got == [
        ("reviews.insert", "public.reviews:1"),
        ("reviews.insert", "public.reviews:2"),
        ("support.low_rating.insert", "public.reviews:2"),
    ]
    db.execute("SELECT webhook.untrack('reviews', 'support.low_rating')")
    assert q(db, "SELECT event_prefix FROM webhook.tracked_tables") == [("reviews",)]
    db.execute("SELECT webhook.untrack('reviews')")
    assert q1(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'reviews'::regclass") == 0


@pytest.mark.parametrize(
    "call, sqlstate",
    [
        ("SELECT webhook.track('v_orders')", "42809"),
        ("SELECT webhook.track('missing_table')", "42P01"),
        ("SELECT webhook.track('orders', condition => 'NEW.nope > 1')", "42703"),
        ("SELECT webhook.track('orders', condition => 'NEW.total >')", "42601"),
        ("SELECT webhook.track('orders', '{delete}', condition => 'NEW.total > 1')", "42P17"),
        ("SELECT webhook.track('orders', columns => '{id,nope}')", "42703"),
        ("SELECT webhook.track('orders', columns => '{}')", "22023"),
        ("SELECT webhook.track('orders', '{}')", "22023"),
        ("SELECT webhook.track('orders', '{insert,upsert}')", "22023"),
        ("SELECT webhook.track('orders', event_prefix => 'bad prefix')", "22023"),
        ("SELECT webhook.track('pg_class')", "42809"),
        ("SELECT webhook.track('webhook.event_log')", "42809"),
        ("SELECT webhook.emit('has space', '{}')", "22023"),
        ("SELECT webhook.emit('ok.type', NULL)", "22004"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(shop, call, sqlstate):
    db = shop
    db.execute("CREATE VIEW v_orders AS SELECT * FROM orders")
    before = q(db, "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY 1")
    with pytest.raises(psycopg.Error) as err:
        db.execute(call)
    assert err.value.sqlstate == sqlstate, err.value
    if sqlstate != "42P01":
        assert err.value.diag.message_hint or err.value.diag.message_primary
    after = q(db, "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY 1")
    assert before == after
    db.execute("INSERT INTO orders (customer) VALUES ('still tracked')")
    assert events(db)[-1][1] == "orders.insert"


@pytest.mark.native_only("DROP EXTENSION; the portable edition is no extension")
def test_untrack_drop_table_and_drop_extension(shop):
    db = shop
    db.execute("CREATE TABLE keep (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('keep')")
    db.execute("SELECT webhook.untrack('keep')")
    db.execute("INSERT INTO keep VALUES (1)")
    assert events(db) == []
    db.execute("DROP TABLE orders")
    assert q(db, "SELECT * FROM webhook.tracked_tables") == []
    db.execute(ORDERS.replace("CREATE TYPE status AS ENUM ('new', 'paid', 'shipped');", ""))
    db.execute("SELECT webhook.track('orders')")
    db.execute("DROP EXTENSION pg_webhook")
    assert q1(db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'webhook%%'") == 0
    db.execute("INSERT INTO orders (customer) VALUES ('after drop')")
    assert q1(db, "SELECT count(*) FROM orders") == 1


@pytest.mark.native_only("DROP EXTENSION; the portable edition is no extension (webhookd uninstall asks for --yes)")
def test_drop_extension_is_refused_while_endpoints_or_deliveries_would_go_with_it(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('t')")
    ep = q1(db, "SELECT webhook.create_endpoint('http://127.0.0.1:9/h')")
    db.execute("INSERT INTO t VALUES (1)")
    db.execute("SELECT webhook.route()")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        db.execute("DROP EXTENSION IF EXISTS \"pg_webhook\"")  # what Django's CreateExtension reverses to
    assert "1 endpoint(s)" in e.value.diag.message_primary and "1 undelivered" in e.value.diag.message_primary
    assert "SET webhook.confirm_drop = on" in e.value.diag.message_hint
    assert q1(db, "SELECT count(*) FROM webhook.tracked_tables") == 1
    # Other extensions are dropped as ever.
    db.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    db.execute("DROP EXTENSION pgcrypto")
    db.execute("SET webhook.confirm_drop = on")
    db.execute("DROP EXTENSION pg_webhook")
    assert q1(db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'webhook%%'") == 0
    assert ep


def test_table_without_primary_key_is_allowed_with_a_notice(db):
    db.execute("CREATE TABLE log (msg text)")
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("SELECT webhook.track('log')")
    assert any("no primary key" in n for n in notices)
    db.execute("INSERT INTO log VALUES ('x')")
    assert q(db, "SELECT event_type, ordering_key FROM webhook.event_log") == [("log.insert", None)]


def test_bulk_statements_capture_every_row(shop):
    db = shop
    db.execute("INSERT INTO orders (customer, total) SELECT 'c' || g, g FROM generate_series(1, 100000) g")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 100000
    with db.cursor().copy("COPY orders (customer, total) FROM STDIN") as cp:
        for i in range(20000):
            cp.write_row((f"copy{i}", i))
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 120000
    # Ids follow the rows' order within a statement.
    assert q1(
        db,
        "SELECT bool_and(ordering_key = 'public.orders:' || id) FROM webhook.event_log",
    )


def test_app_role_without_webhook_privileges_can_write(shop, dbname):
    db = shop
    db.execute("DO $$ BEGIN CREATE ROLE shop_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute("GRANT INSERT, SELECT ON orders TO shop_app; GRANT USAGE ON SEQUENCE orders_id_seq TO shop_app")
    with psycopg.connect(f"postgresql://shop_app@127.0.0.1:{db.info.port}/{dbname}", autocommit=True) as app:
        app.execute("INSERT INTO orders (customer) VALUES ('from the app role')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT * FROM webhook.endpoint_secret")
    assert events(db)[-1][2]["data"]["new"]["customer"] == "from the app role"


def test_emit_is_transactional(db):
    with db.transaction():
        eid = q1(db, "SELECT webhook.emit('loyalty.points_earned', '{\"customer\": 7, \"points\": 120}', '7')")
    try:
        with db.transaction():
            db.execute("SELECT webhook.emit('loyalty.points_earned', '{\"customer\": 8}')")
            raise RuntimeError
    except RuntimeError:
        pass
    rows = q(db, "SELECT id, event_type, ordering_key, body FROM webhook.event_log")
    assert len(rows) == 1 and rows[0][0] == eid and rows[0][2] == "7"
    body = json.loads(rows[0][3])
    assert body["type"] == "loyalty.points_earned" and body["data"] == {"customer": 7, "points": 120}


def notifications(conn, timeout=0.5):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([conn.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        got.extend(conn.notifies(timeout=0.01, stop_after=100))
    return got


@pytest.mark.native_only("the native wake-up flag (wake.rs), which the first committer takes down; the portable "
                         "one's rules are tested in test_portable_capture.py")
def test_notify_once_per_idle_period_and_only_when_dispatcher_idle(shop, dbname):
    db = shop
    with connect(dbname) as listener:
        listener.execute("LISTEN webhook")
        # Busy dispatcher (or none): commits do not notify.
        db.execute("SELECT webhook._set_idle(0)")
        db.execute("INSERT INTO orders (customer) VALUES ('a')")
        assert notifications(listener) == []
        # Idle dispatcher: one NOTIFY per transaction, however many rows.
        db.execute("SELECT webhook._set_idle(60000)")
        with db.transaction():
            db.execute("INSERT INTO orders (customer) SELECT 'bulk' FROM generate_series(1, 50)")
            db.execute("SELECT webhook.emit('x.y', '{}')")
        got = notifications(listener)
        assert len(got) == 1 and got[0].channel == "webhook" and got[0].payload == ""
        # That commit took the flag down: the next ones do not notify until
        # the dispatcher (woken by the first) says it is idle again.
        db.execute("INSERT INTO orders (customer) VALUES ('b')")
        assert notifications(listener) == []
        db.execute("SELECT webhook._set_idle(60000)")
        # A transaction without events does not notify (nor take the flag).
        db.execute("SELECT 1")
        assert notifications(listener) == []
        # Poll-only operation.
        db.execute("SET webhook.notify = off")
        db.execute("INSERT INTO orders (customer) VALUES ('quiet')")
        assert notifications(listener) == []
        db.execute("RESET webhook.notify")
        # The flag is still up for the next commit.
        db.execute("INSERT INTO orders (customer) VALUES ('c')")
        assert len(notifications(listener)) == 1
        db.execute("SELECT webhook._set_idle(0)")


def test_late_commit_is_routed(db, dbname):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('t')")
    db.execute("SELECT webhook.create_endpoint('http://127.0.0.1:9/x')")
    with connect(dbname) as t1, connect(dbname) as t2:
        t1.execute("BEGIN")
        t1.execute("INSERT INTO t VALUES (1)")  # lower id, commits last
        t2.execute("INSERT INTO t VALUES (2)")
        db.execute("SELECT webhook.route()")
        routed = q(db, "SELECT e.ordering_key FROM webhook.delivery d JOIN webhook.event_log e ON e.id = d.event_id")
        assert routed == [("public.t:2",)]
        t1.execute("COMMIT")
    db.execute("SELECT webhook.route()")
    routed = q(
        db, "SELECT e.ordering_key FROM webhook.delivery d JOIN webhook.event_log e ON e.id = d.event_id ORDER BY d.id"
    )
    assert routed == [("public.t:2",), ("public.t:1",)]
    # Routing twice never duplicates.
    db.execute("SELECT webhook.route()")
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 2


def test_route_refuses_to_run_after_writes(db):
    with pytest.raises(psycopg.Error) as err:
        with db.transaction():
            db.execute("SELECT webhook.emit('a.b', '{}')")
            db.execute("SELECT webhook.route()")
    assert err.value.sqlstate == "25001"


def test_payload_follows_renames(db):
    db.execute("CREATE SCHEMA s1; CREATE TABLE s1.t (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('s1.t', event_prefix => 't')")
    db.execute("INSERT INTO s1.t VALUES (1)")
    db.execute("ALTER TABLE s1.t RENAME TO u")
    db.execute("INSERT INTO s1.u VALUES (2)")
    db.execute("ALTER SCHEMA s1 RENAME TO s2")
    db.execute("INSERT INTO s2.u VALUES (3)")
    tables = [json.loads(b)["data"]["table"] for (b,) in q(db, "SELECT body FROM webhook.event_log ORDER BY id")]
    assert tables == ["s1.t", "s1.u", "s2.u"]


def test_routing_in_chunks_keeps_order_and_loses_nothing(db, dbname):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('t')")
    db.execute("SELECT webhook.create_endpoint('http://127.0.0.1:9/x')")
    db.execute("INSERT INTO t SELECT g FROM generate_series(1, 25) g")
    with connect(dbname) as late:
        late.execute("BEGIN")
        late.execute("INSERT INTO t VALUES (100)")  # commits after the window opened
        assert q1(db, "SELECT webhook.route(10)") == 10
        late.execute("COMMIT")
    assert q1(db, "SELECT webhook.route(10)") == 10
    assert q1(db, "SELECT webhook.route(10)") == 5  # the window's rest; closes it
    assert q1(db, "SELECT webhook.route(10)") == 1  # the late commit, next window
    assert q1(db, "SELECT webhook.route(10)") == 0
    keys = [k for (k,) in q(db, "SELECT e.ordering_key FROM webhook.delivery d JOIN webhook.event_log e ON e.id = d.event_id ORDER BY d.id")]
    assert keys == [f"public.t:{i}" for i in list(range(1, 26)) + [100]]


def test_ordering_key_is_the_text_of_each_key_column(db):
    db.execute("CREATE DOMAIN sku AS text")
    db.execute("""CREATE TABLE stock (a smallint, b bigint, c text, d uuid, e numeric, f sku, g bool, n int,
                  PRIMARY KEY (a, b, c, d, e, f, g))""")
    db.execute("SELECT webhook.track('stock')")
    db.execute("""INSERT INTO stock VALUES
                  (-7, -9223372036854775808, 'Zoë, ☕', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.50, 'x-1', true, 1),
                  (32767, 9223372036854775807, '', '00000000-0000-0000-0000-000000000000', 'NaN', '', false, 2)""")
    db.execute("UPDATE stock SET n = n + 1")
    expected = q(db, "SELECT 'public.stock:' || concat_ws(',', a, b, c, d, e, f, g) FROM stock ORDER BY n")
    got = q(db, "SELECT ordering_key FROM webhook.event_log ORDER BY id")
    assert [k for (k,) in got] == [k for (k,) in expected] * 2


def test_an_ordering_key_does_not_depend_on_the_sessions_settings(db, dbname):
    db.execute("CREATE TABLE slots (at timestamptz, day date, tag bytea, n int, PRIMARY KEY (at, day, tag))")
    db.execute("SELECT webhook.track('slots')")
    db.execute("INSERT INTO slots VALUES ('2026-01-01 00:00:00+00', '2026-01-02', '\\xab01', 1)")
    with connect(dbname) as other:
        other.execute("SET TimeZone = 'Asia/Tokyo'")
        other.execute("SET DateStyle = 'SQL, DMY'")
        other.execute("SET bytea_output = 'escape'")
        other.execute("UPDATE slots SET n = 2")
    keys = [k for (k,) in q(db, "SELECT ordering_key FROM webhook.event_log ORDER BY id")]
    assert keys == ["public.slots:2026-01-01T00:00:00.000000Z,2026-01-02,qwE="] * 2


def test_a_partitioned_table_is_captured_as_itself(db):
    """Events of a tracked partitioned table name that table, not the
    partition a row lives in, and read the right columns even from a
    partition whose columns are numbered otherwise."""
    db.execute("CREATE TABLE porders (region text NOT NULL, id int NOT NULL, total int, note text, "
               "PRIMARY KEY (region, id)) PARTITION BY LIST (region)")
    db.execute("CREATE TABLE porders_eu PARTITION OF porders FOR VALUES IN ('eu')")
    # Made on its own with another column order and a dropped column, then attached.
    db.execute("CREATE TABLE porders_us (junk int, note text, total int, id int NOT NULL, region text NOT NULL)")
    db.execute("ALTER TABLE porders_us DROP COLUMN junk")
    db.execute("ALTER TABLE porders ATTACH PARTITION porders_us FOR VALUES IN ('us')")
    db.execute("SELECT webhook.track('porders')")
    db.execute("SELECT webhook.track('porders', event_prefix => 'totals', columns => '{id,total}')")
    db.execute("INSERT INTO porders VALUES ('eu', 1, 10, 'a'), ('us', 2, 20, 'b')")
    rows = q(db, "SELECT event_type, payload->'data', ordering_key FROM webhook.events ORDER BY id")
    by_type = {}
    for t, data, key in rows:
        by_type.setdefault(t, []).append((data, key))
    assert [d["table"] for d, _ in by_type["porders.insert"]] == ["public.porders"] * 2
    assert [d["new"] for d, _ in by_type["porders.insert"]] == [
        {"region": "eu", "id": 1, "total": 10, "note": "a"},
        {"region": "us", "id": 2, "total": 20, "note": "b"},
    ]
    assert [d["new"] for d, _ in by_type["totals.insert"]] == [{"id": 1, "total": 10}, {"id": 2, "total": 20}]
    keys = [k for _, k in by_type["porders.insert"]]
    assert None not in keys and len(set(keys)) == 2
    assert keys == [k for _, k in by_type["totals.insert"]]
    # A row moving to another partition is a delete and an insert (what
    # PostgreSQL runs), both named after the tracked table.
    db.execute("DELETE FROM webhook.event_log")
    db.execute("UPDATE porders SET region = 'us' WHERE id = 1")
    moved = q(db, "SELECT event_type, payload->'data'->>'table' FROM webhook.events "
                  "WHERE starts_with(event_type, 'porders.') ORDER BY id")
    assert moved == [("porders.delete", "public.porders"), ("porders.insert", "public.porders")]
