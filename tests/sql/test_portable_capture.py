"""The portable edition's capture (extension/sql/portable/capture.sql) writes
the same events as the native one, byte for byte: the property test's random
tables, rows, updates, migrations and projections (test_capture_fuzz.py) run
against a native database and a portable one in lockstep, and after every
case both outboxes hold the same events (type, body but for the time of
capture in its envelope, ordering key)."""

import os
import re

import psycopg
import psycopg.types.json
import pytest

from support import editions
from support.cluster import connect, q, q1
from test_capture import notifications
import test_capture_fuzz as fuzz

# They compare the portable edition with the native one in `db`.
pytestmark = pytest.mark.skipif(editions.EDITION != "native", reason="compares the portable edition with the native one of `db`")

CASES = int(os.environ.get("PGWEBHOOK_PORTABLE_FUZZ_CASES", "40"))
STAMP = re.compile(r'^(\{"type":"[^"]*","timestamp":)"[^"]*"')


# The property test picks rows to update and delete by their place in the
# table; the two databases may place updated rows apart (pruning depends on
# what else the cluster runs), so both pick by content instead (rows alike
# in text are alike in their events too).
BY_PLACE = re.compile(r'ctid IN \(SELECT ctid FROM ("(?:[^"]|"")*"\."(?:[^"]|"")*") ORDER BY ctid')


class Lockstep:
    """A connection that runs every statement on the native database (whose
    results it returns, for the property test's own checks) and then on the
    portable one, which must succeed or fail alike."""

    def __init__(self, native, port):
        self.native, self.port = native, port

    def execute(self, sql, params=None):
        sql = BY_PLACE.sub(r'ctid IN (SELECT r.ctid FROM \1 AS r ORDER BY r::text COLLATE "C"', sql)
        try:
            cur = self.native.execute(sql, params)
        except psycopg.Error as e:
            with pytest.raises(psycopg.Error) as other:
                self.port.execute(sql, params)
            assert other.value.sqlstate == e.sqlstate, (sql, e, other.value)
            raise
        self.port.execute(sql, params)
        return cur


def events(conn, after=0):
    return [(t, STAMP.sub(r'\1"…"', b), k)
            for t, b, k in q(conn, "SELECT event_type, body, ordering_key FROM webhook.event_log WHERE id > %s ORDER BY id", after)]


def same_events(native, port, what):
    """Both editions' events are equal; on a difference, say where."""
    for n, (a, b) in enumerate(zip(native, port)):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a[1], b[1])) if x != y), min(len(a[1]), len(b[1])))
            raise AssertionError(f"{what}, event {n + 1} ({a[0]}): keys {a[2]!r} / {b[2]!r}; bodies differ at {at}:\n"
                                 f"native:   {a[1][max(0, at - 120):at + 80]!r}\nportable: {b[1][max(0, at - 120):at + 80]!r}")
    assert len(port) == len(native), what


def test_random_tables_are_captured_byte_for_byte_alike(db, portable_db):
    psycopg.types.json.set_json_loads(fuzz.strict_json, db)
    for c in (db, portable_db):
        c.execute(fuzz.REF_TABLE)
        c.execute(fuzz.REF_RANGE)
    db.execute("SET webhook.max_event_size = '64MB'")
    both = Lockstep(db, portable_db)
    compared = 0
    for index in range(CASES):
        log = []
        try:
            fuzz.random_case(both, index, log)
        except (AssertionError, psycopg.Error) as e:
            raise AssertionError(f"case {index}: {type(e).__name__}: {e}\nstatements:\n" + "\n".join(log[-12:])) from e
        finally:
            db.execute("RESET ALL")
            portable_db.execute("RESET ALL")
            db.execute("SET webhook.max_event_size = '64MB'")
        native = events(db, compared)
        same_events(native, events(portable_db, compared), f"case {index}\n" + "\n".join(log[-12:]))
        compared += len(native)
    assert compared > 10 * CASES


def test_every_type_at_its_edges_alike(db, portable_db):
    db.execute("SET webhook.max_event_size = '64MB'")
    for c in (db, portable_db):
        psycopg.types.json.set_json_loads(fuzz.strict_json, c)
        c.execute(fuzz.REF_TABLE)
        c.execute(fuzz.REF_RANGE)
    schema = fuzz.Schema("edges")
    both = Lockstep(db, portable_db)
    for sql in schema.ddl():
        both.execute(sql)
    both.execute("SET TimeZone = 'Asia/Kathmandu'")
    case = fuzz.Case(both, "edges", fuzz.random.Random(fuzz.SEED), schema)
    columns = [(f"c{i}_{t.sql}"[:60], t) for i, t in enumerate(schema.types)]
    case.create("every_type", [("id", fuzz.Scalar("int4", ["0"]))] + columns, ["id"])
    edges = [t.edge_lits() for _, t in columns]
    for i in range(max(len(e) for e in edges)):
        vals = [str(i)] + [e[i] if i < len(e) else "NULL" for e in edges]
        case.run(f"INSERT INTO {case.qtable} VALUES ({', '.join(vals)})")
    case.run(f"UPDATE {case.qtable} AS t SET id = -t.id - 1")
    case.run(f"DELETE FROM {case.qtable}")
    native = events(db)
    assert len(native) > 30
    same_events(native, events(portable_db), "edges")


def test_commits_wake_an_idle_dispatcher_once_per_transaction(portable_db):
    """The portable wake-up (library.sql): while a dispatcher's session says
    it is idle, each transaction that writes events notifies once, however
    many it writes; while it is busy, or gone, none does."""
    db = portable_db
    name = q1(db, "SELECT current_database()")
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    with connect(name) as dispatcher:
        dispatcher.execute("LISTEN webhook")
        dispatcher.execute("SELECT webhook._set_idle(0)")
        db.execute("INSERT INTO orders (customer) VALUES ('busy')")
        assert notifications(dispatcher) == []
        dispatcher.execute("SELECT webhook._set_idle(60000)")
        dispatcher.execute("SELECT webhook._set_idle(60000)")  # idle twice is idle once
        with db.transaction():
            db.execute("INSERT INTO orders (customer) SELECT 'bulk' FROM generate_series(1, 50)")
            db.execute("INSERT INTO orders (customer) VALUES ('more')")
        got = notifications(dispatcher)
        assert len(got) == 1 and got[0].channel == "webhook" and got[0].payload == ""
        # Rolled back: nothing to wake for.
        with pytest.raises(psycopg.errors.QueryCanceled):
            with db.transaction():
                db.execute("INSERT INTO orders (customer) VALUES ('gone')")
                db.execute("SET LOCAL statement_timeout = 1")
                db.execute("SELECT pg_sleep(1)")
        assert notifications(dispatcher) == []
        db.execute("SET webhook.notify = off")
        db.execute("INSERT INTO orders (customer) VALUES ('quiet')")
        assert notifications(dispatcher) == []
        # Read as PostgreSQL reads a boolean setting (the native edition's
        # is one, which SET checks).
        for off in ("OFF", "of", "False", "f", "n", "No", "0"):
            db.execute(f"SET webhook.notify = '{off}'")
            db.execute("INSERT INTO orders (customer) VALUES ('quiet')")
            assert notifications(dispatcher) == [], off
        for on in ("ON", "t", "yes", "1"):
            db.execute(f"SET webhook.notify = '{on}'")
            db.execute("INSERT INTO orders (customer) VALUES ('woken')")
            assert len(notifications(dispatcher)) == 1, on
        # A placeholder takes any text: not a boolean wakes (the safe
        # choice) and says so, and the transaction that wrote commits.
        warnings = []
        db.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.message_primary)))
        db.execute("SET webhook.notify = 'o'")
        db.execute("INSERT INTO orders (customer) VALUES ('kept')")
        assert len(notifications(dispatcher)) == 1
        assert warnings == [("WARNING", 'webhook.notify is set to "o", which is not a boolean: '
                                        "idle dispatchers are woken as if it were on")]
        assert q1(db, "SELECT count(*) FROM orders WHERE customer = 'kept'") == 1
        db.execute("RESET webhook.notify")
        db.execute("INSERT INTO orders (customer) VALUES ('c')")
        assert len(notifications(dispatcher)) == 1
        dispatcher.execute("SELECT webhook._set_idle(0)")
        db.execute("INSERT INTO orders (customer) VALUES ('d')")
        assert notifications(dispatcher) == []
        dispatcher.execute("SELECT webhook._set_idle(60000)")
    # The dispatcher's connection ended: it is not idle any more.
    with connect(name) as listener:
        listener.execute("LISTEN webhook")
        db.execute("INSERT INTO orders (customer) VALUES ('e')")
        assert notifications(listener) == []


def test_the_two_documented_differences(db, portable_db):
    """What the portable edition writes otherwise (capture.sql's header says
    why): a type with its own cast to json (hstore's) by that cast, and a
    json value inside a composite that also holds a timestamp, date or
    bytea without the white space around it. Same data either way."""
    for c in (db, portable_db):
        c.execute("CREATE EXTENSION hstore")
        c.execute("CREATE TYPE stamped AS (j json, at timestamptz)")
        c.execute("CREATE TABLE odd (id int PRIMARY KEY, h hstore, v stamped)")
        c.execute("SELECT webhook.track('odd')")
        c.execute("""INSERT INTO odd VALUES (1, 'a=>1', ROW('  {"a" : 1}  ', '2001-01-01 00:00+00'))""")
    native, port = (q1(c, "SELECT body FROM webhook.event_log") for c in (db, portable_db))
    assert '"h":"\\"a\\"=>\\"1\\"","v":{"j":  {"a" : 1}  ,"at":"2001-01-01T00:00:00.000000Z"}' in native
    assert '"h":{"a": "1"},"v":{"j":{"a" : 1},"at":"2001-01-01T00:00:00.000000Z"}' in port


def test_partitioned_tables_and_truncate_alike(db, portable_db):
    """A tracked partitioned table, one partition with its columns numbered
    otherwise, projections, rows moving between partitions, two levels,
    savepoints rolled back, and what TRUNCATE does (nothing: it fires no
    row trigger)."""
    both = Lockstep(db, portable_db)
    for sql in [
        "CREATE TABLE porders (region text NOT NULL, id int NOT NULL, total int, note text, at timestamptz, "
        "PRIMARY KEY (region, id)) PARTITION BY LIST (region)",
        "CREATE TABLE porders_eu PARTITION OF porders FOR VALUES IN ('eu') PARTITION BY RANGE (id)",
        "CREATE TABLE porders_eu_low PARTITION OF porders_eu FOR VALUES FROM (MINVALUE) TO (100)",
        "CREATE TABLE porders_eu_high PARTITION OF porders_eu FOR VALUES FROM (100) TO (MAXVALUE)",
        "CREATE TABLE porders_us (junk int, at timestamptz, note text, total int, id int NOT NULL, region text NOT NULL)",
        "ALTER TABLE porders_us DROP COLUMN junk",
        "ALTER TABLE porders ATTACH PARTITION porders_us FOR VALUES IN ('us')",
        "SELECT webhook.track('porders')",
        "SELECT webhook.track('porders', event_prefix => 'totals', columns => '{id,total,at}')",
        "INSERT INTO porders VALUES ('eu', 1, 10, 'a', '2001-01-01 00:00+00'), ('us', 2, 20, 'b', NULL), "
        "('eu', 200, 30, 'c', '1999-12-31 23:59:59.5+00')",
        "UPDATE porders SET region = 'us' WHERE id = 1",
        "UPDATE porders SET total = total + 1",
        "UPDATE porders SET note = 'x' WHERE id = 2",
        "BEGIN", "INSERT INTO porders VALUES ('eu', 5, 1, 'kept', NULL)", "SAVEPOINT s",
        "INSERT INTO porders VALUES ('eu', 6, 1, 'rolled back', NULL)", "ROLLBACK TO SAVEPOINT s", "COMMIT",
        "ALTER TABLE porders RENAME TO porders_renamed",
        "DELETE FROM porders_renamed WHERE id = 200",
        "TRUNCATE porders_renamed",
    ]:
        both.execute(sql)
    native = events(db)
    assert len(native) == 21
    assert {t for t, _, _ in native} == {"porders.insert", "porders.update", "porders.delete",
                                         "totals.insert", "totals.update", "totals.delete"}
    same_events(native, events(portable_db), "partitions")
