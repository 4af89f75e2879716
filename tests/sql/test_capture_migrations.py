"""Captures through the migrations ORMs run (Django's RemoveField is
always DROP COLUMN ... CASCADE; AlterField retypes; a primary key moves to
a UUID): no DDL removes or disables a capture while its table stays, and
what a capture sends follows the table as it is now.

The refusals are event triggers, which only a role that may create them
installs: always in the native edition, in the portable edition when it is
installed by a superuser (the `guarded` fixture); installed by an ordinary
owner, the portable edition says that DDL is not guarded."""

import json
import uuid

import psycopg
import psycopg.errors
import pytest

from support import editions
from support.cluster import dsn


def q(db, sql, *args):
    return db.execute(sql, args).fetchall()


def q1(db, sql, *args):
    return db.execute(sql, args).fetchone()[0]


def events(db):
    return q(db, "SELECT event_type, body::jsonb->'data', ordering_key FROM webhook.event_log ORDER BY id")


def captured(db, table="t"):
    return q(db, "SELECT event_prefix, events FROM webhook.tracked_tables WHERE relation = %s::regclass ORDER BY 1",
             table)


@pytest.fixture
def guarded(db, dbname):
    """A database whose DDL is guarded: `db` in the native edition, the
    portable edition installed by a superuser in the other."""
    if editions.EDITION == "native":
        yield db
        return
    name = f"{dbname}_su"
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        done = editions.portable_install(name, url=dsn(name))
        assert done.returncode == 0, done.stderr + done.stdout
        with psycopg.connect(dsn(name), autocommit=True) as c:
            c.execute("UPDATE webhook.portable_settings SET allow_http = true")
            yield c
    finally:
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_dropping_a_column_a_condition_uses_with_cascade_is_refused_and_says_how(guarded):
    db = guarded
    db.execute("CREATE TABLE t (id int PRIMARY KEY, a text, b int)")
    db.execute("SELECT webhook.track('t', '{insert,update}', condition => $$NEW.a <> 'skip'$$)")
    # PostgreSQL refuses it without CASCADE, and its hint says to use CASCADE.
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        db.execute("ALTER TABLE t DROP COLUMN a")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        db.execute("ALTER TABLE t DROP COLUMN a CASCADE")
    d = e.value.diag
    assert "would remove the capture" in d.message_primary and '"t"' in d.message_primary
    assert "column public.t.a" in d.message_detail
    assert "webhook.track('public.t', '{insert,update}', event_prefix => 't', condition => ...)" in d.message_hint
    assert "webhook.untrack('public.t', 't')" in d.message_hint
    assert captured(db) == [("t", ["insert", "update"])]
    # The fix the hint names, in one transaction: nothing is ever uncaptured.
    with db.transaction():
        db.execute("SELECT webhook.track('t', '{insert,update}', condition => 'NEW.b > 0')")
        db.execute("ALTER TABLE t DROP COLUMN a CASCADE")
    db.execute("INSERT INTO t VALUES (1, 5), (2, 0)")
    assert [(t, d["new"]) for t, d, _ in events(db)] == [("t.insert", {"id": 1, "b": 5})]


def test_dropping_a_column_a_captures_columns_list_is_refused(guarded):
    db = guarded
    db.execute("CREATE TABLE t (id int PRIMARY KEY, a text, b int)")
    db.execute("SELECT webhook.track('t', '{insert,update}', columns => '{id,a}')")
    for ddl in ["ALTER TABLE t DROP COLUMN a CASCADE", "ALTER TABLE t DROP COLUMN a"]:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
            db.execute(ddl)
        assert "column public.t.a" in e.value.diag.message_primary
        assert "webhook.track('public.t', '{insert,update}', event_prefix => 't', columns => ...)" in e.value.diag.message_hint
    assert captured(db) == [("t", ["insert", "update"])]
    # A column the capture does not send goes as any other.
    db.execute("ALTER TABLE t DROP COLUMN b CASCADE")
    db.execute("INSERT INTO t VALUES (1, 'x')")
    assert [d["new"] for _, d, _ in events(db)] == [{"id": 1, "a": "x"}]
    with db.transaction():
        db.execute("SELECT webhook.track('t', '{insert,update}', columns => '{id}')")
        db.execute("ALTER TABLE t DROP COLUMN a")
    db.execute("INSERT INTO t VALUES (2)")
    assert [d["new"] for _, d, _ in events(db)][-1] == {"id": 2}


def test_a_capture_trigger_is_not_dropped_or_disabled_by_hand(guarded):
    db = guarded
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    db.execute("CREATE FUNCTION mine() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
    db.execute("CREATE TRIGGER audit AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION mine()")
    db.execute("SELECT webhook.track('t', '{insert}')")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        db.execute('DROP TRIGGER "webhook_capture_insert:t" ON t')
    assert "webhook.untrack('public.t', 't')" in e.value.diag.message_hint
    for ddl in ["ALTER TABLE t DISABLE TRIGGER ALL", "ALTER TABLE t DISABLE TRIGGER USER",
                'ALTER TABLE t DISABLE TRIGGER "webhook_capture_insert:t"',
                'ALTER TABLE t ENABLE REPLICA TRIGGER "webhook_capture_insert:t"']:
        with pytest.raises(psycopg.errors.ObjectInUse) as e:
            db.execute(ddl)
        assert "would stop the capture" in e.value.diag.message_primary, ddl
        assert "webhook.untrack('public.t', 't')" in e.value.diag.message_hint
    # The table's own triggers are the owner's to disable.
    db.execute("ALTER TABLE t DISABLE TRIGGER audit")
    db.execute("INSERT INTO t VALUES (1, 'a')")
    assert len(events(db)) == 1
    # untrack() and DROP TABLE take captures as before.
    db.execute("SELECT webhook.untrack('t')")
    db.execute("SELECT webhook.track('t', '{insert}')")
    db.execute("DROP TABLE t")
    assert q1(db, "SELECT count(*) FROM webhook.tracked_tables") == 0


def test_dropping_a_function_a_condition_calls_with_cascade_is_refused(guarded):
    db = guarded
    db.execute("CREATE TABLE t (id int PRIMARY KEY, rating int)")
    db.execute("CREATE FUNCTION public.low(r int) RETURNS boolean LANGUAGE sql IMMUTABLE RETURN r <= 2")
    db.execute("SELECT webhook.track('t', '{insert}', condition => 'public.low(NEW.rating)')")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist) as e:
        db.execute("DROP FUNCTION public.low(int) CASCADE")
    assert "function public.low(integer)" in e.value.diag.message_detail
    assert captured(db) == [("t", ["insert"])]


def test_a_tracked_partitioned_table_detaches_and_drops_partitions(guarded):
    db = guarded
    db.execute("CREATE TABLE m (id int, at date, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    db.execute("CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    db.execute("CREATE TABLE m_2026 PARTITION OF m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    db.execute("SELECT webhook.track('m', '{insert}', columns => '{id,at,note}')")
    db.execute("ALTER TABLE m DETACH PARTITION m_2025")
    db.execute("DROP TABLE m_2025")
    db.execute("INSERT INTO m VALUES (1, '2026-05-01')")
    assert [(t, d["table"]) for t, d, _ in events(db)] == [("m.insert", "public.m")]
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        db.execute("ALTER TABLE m DROP COLUMN note CASCADE")


def test_retyping_and_renaming_a_column_of_columns_works_and_the_payload_follows(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, n smallint, note text)")
    db.execute("SELECT webhook.track('t', '{insert,update}', columns => '{id,n}')")
    db.execute("INSERT INTO t VALUES (1, 7, 'a')")
    # Django's SmallIntegerField -> IntegerField -> DecimalField, and a rename.
    db.execute("ALTER TABLE t ALTER COLUMN n TYPE int")
    db.execute("ALTER TABLE t ALTER COLUMN n TYPE numeric(10, 2)")
    db.execute("ALTER TABLE t RENAME COLUMN n TO amount")
    db.execute("INSERT INTO t VALUES (2, 3.5, 'b')")
    db.execute("UPDATE t SET note = 'c' WHERE id = 2")  # no column of `columns` changed: no event
    db.execute("UPDATE t SET amount = 3.50 WHERE id = 2")  # numeric equality: 3.50 = 3.5, no event
    db.execute("UPDATE t SET amount = 4 WHERE id = 2")
    got = [(t, d["new"]) for t, d, _ in events(db)]
    assert got == [("t.insert", {"id": 1, "n": 7}), ("t.insert", {"id": 2, "amount": 3.50}),
                   ("t.update", {"id": 2, "amount": 4.00})]
    assert q1(db, "SELECT body FROM webhook.event_log ORDER BY id DESC LIMIT 1").count('"amount":4.00') == 1


def test_a_condition_columns_type_change_is_made_in_one_transaction_with_track(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, rating smallint)")
    db.execute("SELECT webhook.track('t', '{insert}', condition => 'NEW.rating <= 2')")
    # PostgreSQL refuses to retype a column a trigger's WHEN uses ...
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        db.execute("ALTER TABLE t ALTER COLUMN rating TYPE int")
    assert "webhook_capture_insert:t" in e.value.diag.message_detail
    # ... and the README's way round it never leaves the table uncaptured.
    with db.transaction():
        db.execute("SELECT webhook.track('t', '{insert}')")
        db.execute("ALTER TABLE t ALTER COLUMN rating TYPE int")
        db.execute("SELECT webhook.track('t', '{insert}', condition => 'NEW.rating <= 2')")
    db.execute("INSERT INTO t VALUES (1, 1), (2, 5)")
    assert [d["new"] for _, d, _ in events(db)] == [{"id": 1, "rating": 1}]


def test_the_ordering_key_follows_a_primary_key_change_to_a_uuid(db):
    db.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
    db.execute("SELECT webhook.track('t')")
    db.execute("INSERT INTO t VALUES (1, 'before')")
    # What Django's migration to a UUIDField primary key runs, step by step.
    db.execute("ALTER TABLE t ADD COLUMN uid uuid")
    db.execute("UPDATE t SET uid = '00000000-0000-0000-0000-000000000001'")
    db.execute("ALTER TABLE t DROP CONSTRAINT t_pkey")
    db.execute("ALTER TABLE t ADD PRIMARY KEY (uid)")
    db.execute("ALTER TABLE t DROP COLUMN id")
    u = uuid.uuid4()
    db.execute("INSERT INTO t (uid, v) VALUES (%s, 'after')", (u,))
    db.execute("UPDATE t SET v = 'again' WHERE uid = %s", (u,))
    keys = [k for _, _, k in events(db)]
    assert keys[0] == "public.t:1"
    # The backfill's update was keyed as the table was then (by id, no
    # primary key yet on uid); after the change, by the UUID.
    assert keys[-2:] == [f"public.t:{u}", f"public.t:{u}"]
    assert all(k is not None for k in keys)


def test_a_table_that_gains_a_primary_key_gains_ordering_keys(db):
    db.execute("CREATE TABLE t (code text NOT NULL, v int)")
    db.execute("SELECT webhook.track('t', '{insert}')")
    db.execute("INSERT INTO t VALUES ('a', 1)")
    db.execute("ALTER TABLE t ADD PRIMARY KEY (code)")
    db.execute("INSERT INTO t VALUES ('b', 2)")
    # A key of its key columns only, not of a primary key's INCLUDE columns.
    db.execute("ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (code) INCLUDE (v)")
    db.execute("INSERT INTO t VALUES ('c', 3)")
    keys = [k for _, _, k in events(db)]
    assert keys[0] is None
    assert keys[1:] == ["public.t:b", "public.t:c"]


@pytest.mark.skipif(editions.EDITION != "portable", reason="what the portable edition's owner install says")
def test_the_portable_edition_installed_by_its_owner_says_ddl_is_not_guarded(db, dbname):
    assert q1(db, "SELECT count(*) FROM pg_event_trigger WHERE evtname ~ '^webhook'") == 0
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {dbname}_again OWNER {editions.OWNER}")
    try:
        done = editions.portable_install(f"{dbname}_again")
        assert done.returncode == 0
        assert "DDL is not guarded" in done.stdout + done.stderr
    finally:
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {dbname}_again WITH (FORCE)")


def test_json_of_a_listed_column_is_compared_by_its_text(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, doc json, tags text[])")
    db.execute("SELECT webhook.track('t', '{update}', columns => '{id,doc,tags}')")
    db.execute("""INSERT INTO t VALUES (1, '{"a": 1}', '{x}')""")
    db.execute("""UPDATE t SET doc = '{"a": 1}'""")
    db.execute("""UPDATE t SET doc = '{"a":1}'""")
    db.execute("""UPDATE t SET tags = '{x}'""")
    db.execute("""UPDATE t SET tags = '{x,y}'""")
    db.execute("""UPDATE t SET tags = NULL""")
    db.execute("""UPDATE t SET tags = NULL""")
    got = [json.dumps(d["new"]) for _, d, _ in events(db)]
    assert len(got) == 3, got


def test_ddl_of_a_role_without_any_grant_on_schema_webhook_is_guarded_all_the_same(guarded):
    # The guard runs for every role's DDL: it may use nothing of schema
    # webhook that such a role could not.
    db = guarded
    db.execute("DO $$ BEGIN CREATE ROLE plain_owner LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    name = q1(db, "SELECT current_database()")
    db.execute(f"GRANT CREATE ON DATABASE {name} TO plain_owner")
    db.execute("CREATE SCHEMA IF NOT EXISTS plain AUTHORIZATION plain_owner")
    with psycopg.connect(dsn(name).replace("postgres@", "plain_owner@"), autocommit=True) as c:
        c.execute("CREATE TABLE plain.t (id int PRIMARY KEY, a text, b int)")
        c.execute("ALTER TABLE plain.t DROP COLUMN b")
        c.execute("ALTER TABLE plain.t DISABLE TRIGGER USER")
    db.execute("SELECT webhook.track('plain.t', columns => '{id,a}')")
    with psycopg.connect(dsn(name).replace("postgres@", "plain_owner@"), autocommit=True) as c:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            c.execute("ALTER TABLE plain.t DROP COLUMN a")
        c.execute("DROP TABLE plain.t")


def test_skip_unchanged_leaves_out_updates_that_change_nothing(db):
    """Django's save() rewrites every column: with skip_unchanged an update
    is an event only when some column changed (as the column's type
    compares: 1.0 and 1.00 are one numeric), and a column added later
    counts too."""
    db.execute("CREATE TABLE products (id int PRIMARY KEY, name text, price numeric, tags text[], doc jsonb)")
    db.execute("SELECT webhook.track('products', skip_unchanged => true)")
    db.execute("""INSERT INTO products VALUES (1, 'tea', 1.0, '{a}', '{"k": 1}'), (2, 'cup', 2, NULL, NULL)""")
    # save() of nothing new (1.00 is row 1's 1.0; '{"k":1}' its doc, as jsonb).
    db.execute("""UPDATE products SET name = name, price = CASE WHEN id = 1 THEN 1.00 ELSE price END, tags = tags,
                                      doc = CASE WHEN id = 1 THEN '{"k":1}' ELSE doc END""")
    db.execute("UPDATE products SET tags = '{a,b}' WHERE id = 1")
    db.execute("UPDATE products SET doc = NULL WHERE id = 1")
    db.execute("ALTER TABLE products ADD COLUMN stock int")
    db.execute("UPDATE products SET stock = 3 WHERE id = 2")
    db.execute("UPDATE products SET stock = stock")
    evs = q(db, "SELECT event_type, ordering_key FROM webhook.event_log ORDER BY id")
    assert evs == [("products.insert", "public.products:1"), ("products.insert", "public.products:2"),
                   ("products.update", "public.products:1"), ("products.update", "public.products:1"),
                   ("products.update", "public.products:2")]
    # Only the update trigger has the option; it shows as its last argument.
    assert any(t.endswith("'skip_unchanged')") and "UPDATE" in t for t in q1(db, "SELECT triggers FROM webhook.tracked_tables"))
    # Tracked again without it: every update is an event again.
    db.execute("SELECT webhook.track('products')")
    db.execute("UPDATE products SET name = name WHERE id = 1")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 6
