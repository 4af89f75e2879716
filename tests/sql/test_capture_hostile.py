"""Capture attacked: crafted trigger arguments, outbox indexes, oversized
rows and values jsonb cannot hold. Each one an ERROR with an SQLSTATE and a
hint (never a crashed backend), or, for valid data, an event that every view
can read."""

import json

import psycopg
import pytest

from support import editions
from support.cluster import connect, dsn, q, q1


def server_start(db):
    return q1(db, "SELECT pg_postmaster_start_time()")


def no_rust_internals(err):
    """The message and detail a client sees: no panic text, no backtrace."""
    text = f"{err.diag.message_primary} {err.diag.message_detail or ''} {err.diag.message_hint or ''}"
    for leak in ["panicked", "backtrace", ".rs:", "RUST_BACKTRACE", "stack backtrace"]:
        assert leak not in text, text


@pytest.mark.parametrize(
    "args, why",
    [
        ("'k.insert', '300', ''", "column number 300"),
        ("'k.insert', '10', ''", "column number 10"),
        ("'k.insert', '0', ''", "column number 0"),
        ("'k.insert', '-1', ''", "column number -1"),
        ("'k.insert', '1,x', ''", "not a column number"),
        ("'k.insert', '', '1000'", "column number 1000"),
        ("'k.insert', '1', '2,99999'", "not a column number"),
        ("'any \"weird\" type!', '1', ''", "not a valid event type"),
        ("'', '1', ''", "not a valid event type"),
        ("'k.insert'", "expected 3 to 5 arguments"),
        ("", "expected 3 to 5 arguments"),
        ("'k.insert', '', '', 'public.k', 'skip_unchanged', 'x'", "expected 3 to 5 arguments"),
        ("'k.insert', '', '', 'public.k', 'x'", '"x" is not an option'),
        ("'k.insert', '', '', ''", "key scope must be 1 to 140 bytes, not 0"),
        (f"'k.insert', '', '', '{'s' * 141}'", "key scope must be 1 to 140 bytes, not 141"),
    ],
)
def test_a_capture_trigger_with_crafted_arguments_is_refused_without_crashing(db, args, why):
    started = server_start(db)
    db.execute("CREATE TABLE k (id int PRIMARY KEY, v text)")
    db.execute(f"CREATE TRIGGER y AFTER INSERT ON k FOR EACH ROW EXECUTE FUNCTION webhook._capture_row({args})")
    with pytest.raises(psycopg.errors.TriggerProtocolViolated) as e:
        db.execute("INSERT INTO k VALUES (1, 'a')")
    assert why in e.value.diag.message_primary
    assert "webhook.track()" in e.value.diag.message_hint
    no_rust_internals(e.value)
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0
    assert q1(db, "SELECT count(*) FROM k") == 0
    # The backend survived, and the cluster never went through recovery.
    assert server_start(db) == started


def test_a_role_that_may_use_the_schema_cannot_install_capture_triggers(db, dbname):
    db.execute("DO $$ BEGIN CREATE ROLE crafty LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute("GRANT USAGE ON SCHEMA webhook TO crafty")
    db.execute(f"GRANT CREATE ON DATABASE {dbname} TO crafty")
    with psycopg.connect(dsn(dbname).replace("postgres@", "crafty@"), autocommit=True) as c:
        c.execute("CREATE TEMP TABLE mine (id int PRIMARY KEY, total numeric)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(
                "CREATE TRIGGER forge AFTER INSERT ON mine FOR EACH ROW "
                "EXECUTE FUNCTION webhook._capture_row('orders.insert', '1', '')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
            c.execute("SELECT webhook.track('mine')")
        assert "grant_tracker" in e.value.diag.message_hint
    # Granted, it tracks tables it owns.
    db.execute("SELECT webhook.grant_tracker('crafty')")
    with psycopg.connect(dsn(dbname).replace("postgres@", "crafty@"), autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS crafty AUTHORIZATION crafty")
        c.execute("CREATE TABLE crafty.mine (id int PRIMARY KEY)")
        c.execute("SELECT webhook.track('crafty.mine')")
        c.execute("INSERT INTO crafty.mine VALUES (1)")
    assert q1(db, "SELECT event_type FROM webhook.event_log") == "mine.insert"


def test_a_dropped_key_column_leaves_events_without_an_ordering_key(db):
    db.execute("CREATE TABLE k (id int PRIMARY KEY, v text)")
    db.execute("SELECT webhook.track('k')")
    db.execute("INSERT INTO k VALUES (1, 'a')")
    db.execute("ALTER TABLE k DROP COLUMN id")
    db.execute("INSERT INTO k VALUES ('b')")
    rows = q(db, "SELECT ordering_key, payload->'data'->'new' FROM webhook.events ORDER BY id")
    assert rows == [("public.k:1", {"id": 1, "v": "a"}), (None, {"v": "b"})]


@pytest.mark.native_only("the native capture writes the outbox without the executor, so it refuses such indexes; the portable one inserts through it, so every index works")
def test_an_expression_or_partial_index_on_the_outbox_is_refused(db):
    for ddl in [
        "CREATE INDEX ON webhook.event_log ((lower(event_type)))",
        "CREATE INDEX ON webhook.event_log (created_at) WHERE endpoint_id IS NULL",
    ]:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
            db.execute(ddl)
        assert "plain column indexes" in e.value.diag.message_hint
    # A plain index is fine, and capture keeps it up to date.
    db.execute("CREATE INDEX outbox_by_type ON webhook.event_log (event_type)")
    db.execute("CREATE TABLE k (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('k')")
    db.execute("INSERT INTO k SELECT generate_series(1, 50)")
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        db.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in q(db, "EXPLAIN SELECT count(*) FROM webhook.event_log WHERE event_type = 'k.insert'"))
        # The outbox is partitioned: the scan uses generation 0's part of it.
        part = q1(db, "SELECT i.inhrelid::regclass::text FROM pg_inherits i "
                      "WHERE i.inhparent = 'webhook.outbox_by_type'::regclass")
        assert part.removeprefix("webhook.") in plan
        assert q1(db, "SELECT count(*) FROM webhook.event_log WHERE event_type = 'k.insert'") == 50


@pytest.mark.native_only("the native capture writes the outbox without the executor, so it refuses such indexes; the portable one inserts through it, so every index works")
def test_an_expression_index_made_behind_the_guards_back_fails_captures_cleanly(db):
    started = server_start(db)
    db.execute("CREATE TABLE k (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('k')")
    # Event triggers do not fire for a replica session: the index gets made.
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("CREATE INDEX sneaky ON webhook.event_log ((lower(event_type)))")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        db.execute("INSERT INTO k VALUES (1)")
    assert "sneaky" in e.value.diag.message_primary
    no_rust_internals(e.value)
    assert server_start(db) == started
    db.execute("DROP INDEX webhook.sneaky")
    db.execute("INSERT INTO k VALUES (1)")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 1


def test_a_json_nul_escape_written_by_an_insert_only_role_keeps_the_events_view_working(db, dbname):
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, doc json, tags jsonb)")
    db.execute("SELECT webhook.track('docs')")
    db.execute("DO $$ BEGIN CREATE ROLE writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute("GRANT INSERT ON docs TO writer")
    with psycopg.connect(dsn(dbname).replace("postgres@", "writer@"), autocommit=True) as w:
        w.execute("""INSERT INTO docs VALUES (1, '{"a": "x\\u0000y", "b": "\\\\u0000"}', '{"t": 1}')""")
        w.execute("""INSERT INTO docs VALUES (2, '{"plain": true}', NULL)""")
    rows = q(db, "SELECT id, payload, body FROM webhook.events ORDER BY id")
    assert len(rows) == 2
    doc = rows[0][1]["data"]["new"]["doc"]
    assert doc == {"a": "x\ufffdy", "b": "\\u0000"}
    # The body, what receivers get, is exactly what was captured.
    assert '"x\\u0000y"' in rows[0][2]
    assert json.loads(rows[0][2])["data"]["new"]["doc"]["a"] == "x\x00y"
    assert rows[1][1]["data"]["new"]["doc"] == {"plain": True}


def test_an_oversized_row_fails_its_statement_with_a_clear_error_and_writes_nothing(db):
    db.execute("CREATE TABLE big (id int PRIMARY KEY, body text)")
    db.execute("SELECT webhook.track('big')")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as e:
        db.execute("INSERT INTO big VALUES (1, repeat('x', 2 * 1024 * 1024))")
    msg = e.value.diag.message_primary
    assert "big.insert" in msg and "webhook.max_event_size (1048576 bytes)" in msg
    assert "columns" in e.value.diag.message_hint
    assert q1(db, "SELECT count(*) FROM big") == 0
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0
    # Under the limit, and with a raised limit, rows are captured.
    db.execute("INSERT INTO big VALUES (2, repeat('x', 1000000))")
    editions.raise_max_event_size(db, 4 * 1024 * 1024)
    db.execute("INSERT INTO big VALUES (3, repeat('x', 2 * 1024 * 1024))")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 2


def test_an_oversized_emit_is_refused(db):
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        db.execute("SELECT webhook.emit('big.thing', jsonb_build_object('x', repeat('y', 1100000)))")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0


@pytest.mark.native_only("the superuser-only setting; the portable edition's owner-only table is tested in test_portable_library.py")
def test_only_a_superuser_may_raise_the_event_size_limit(db, dbname):
    db.execute("DO $$ BEGIN CREATE ROLE app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute("GRANT USAGE ON SCHEMA webhook TO app")
    with psycopg.connect(dsn(dbname).replace("postgres@", "app@"), autocommit=True) as a:
        a.execute("SELECT webhook._allow_http()")  # the library is loaded
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SET webhook.max_event_size = '1GB'")
        assert q1(a, "SHOW webhook.max_event_size") == "1MB"
