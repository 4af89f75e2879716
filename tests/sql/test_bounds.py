"""Every text pg_webhook stores is bounded in bytes, and no endpoint's data
can stop the upkeep of the others.

A bound in characters is not one in bytes (a character is up to 4): a URL
of 2,040 four-byte characters once passed a 2,048-character check, and every
operational event about it failed. Each bound is tried with the largest
value it accepts, in four-byte text, and one byte more; the catalog check
makes a new text column fail here until it is given a bound.
"""

import hashlib
import json

import psycopg
import pytest

from support import editions
from support.cluster import q, q1

WIDE = "\U0001d11e"  # 𝄞, four bytes in UTF-8

# Every text-like column of pg_webhook's tables, and what bounds it.
BOUNDED = {
    "attempt_log.error": "record(): 1024 characters",
    "attempt_log.response_excerpt": "record(): 1024 characters",
    "attempt_log.worker": "record(): 128 characters; claim() refuses a longer worker",
    "delivery.last_error": "record(): 1024 characters",
    "delivery.leased_by": "claim(): the worker, at most 128 bytes",
    "delivery.ordering_key": "the event's (below)",
    "delivery.status": "CHECK: pending, succeeded, dead",
    "endpoint.description": "_check_description: 1024 bytes",
    "endpoint.disabled_reason": "written by pg_webhook only: a fixed text and a role name",
    "endpoint.event_types": "_check_patterns: 100 patterns of 200 ASCII bytes",
    "endpoint.headers": "_check_headers: 32 headers, 8192 bytes",
    "endpoint.retry_schedule": "_check_retry: 100 intervals",
    "endpoint.url": "_check_url: 2048 bytes",
    "endpoint_secret.secret": "_check_secret: a whsec_ key of bounded length",
    "event_log.body": "webhook.max_event_size (capture, emit); fixed texts (operational, test)",
    "event_log.event_type": "_event_type_ok: 200 ASCII bytes",
    "event_log.ordering_key": "_ordering_key: 256 bytes, longer keys as a digest; captured: a scope of 140 bytes first",
    "event_log.traceparent": "_traceparent: a W3C traceparent or NULL",
    "router.cur_snap": "pg_current_snapshot(): the server's own",
    "router.prev_snap": "pg_current_snapshot(): the server's own",
}
if editions.EDITION == "portable":
    BOUNDED["capture_suspension.txid"] = "pg_current_xact_id(): the server's own"


def test_every_stored_text_has_a_bound(db):
    cols = {
        f"{t}.{c}"
        for t, c in q(
            db,
            """SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                JOIN pg_type t ON t.oid = a.atttypid
               WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND a.attnum > 0 AND NOT a.attisdropped
                 AND (t.typcategory IN ('S', 'A', 'U') OR t.oid IN ('json'::regtype, 'jsonb'::regtype))""",
        )
    }
    assert cols == set(BOUNDED), (
        f"columns without a stated bound: {sorted(cols - set(BOUNDED))}; gone: {sorted(set(BOUNDED) - cols)}"
    )


def refused(db, sqlstate, sql, *args):
    with pytest.raises(psycopg.Error) as e:
        db.execute(sql, args)
    assert e.value.sqlstate == sqlstate, e.value
    assert e.value.diag.message_hint, "no hint"
    return e.value


def widest_url(nbytes):
    head = "https://example.com/"
    n, rest = divmod(nbytes - len(head), 4)
    return head + "a" * rest + WIDE * n


def test_endpoint_settings_are_bounded_in_bytes(db):
    url = widest_url(2048)
    assert len(url.encode()) == 2048 and len(url) < 600
    eid = q1(db, "SELECT webhook.create_endpoint(%s)", url)
    refused(db, "22023", "SELECT webhook.create_endpoint(%s)", widest_url(2049))
    refused(db, "22023", "SELECT webhook.alter_endpoint(%s, url => %s)", eid, widest_url(2049))

    desc = "é" * 512
    db.execute("SELECT webhook.alter_endpoint(%s, description => %s)", (eid, desc))
    refused(db, "22001", "SELECT webhook.alter_endpoint(%s, description => %s)", eid, desc + "a")
    refused(db, "22001", "SELECT webhook.create_endpoint('https://example.com/d', description => %s)", "x" * 2_000_000)
    assert q1(db, "SELECT description FROM webhook.endpoint WHERE id = %s", eid) == desc

    patterns = [f"t{i}.*" for i in range(100)]
    db.execute("SELECT webhook.alter_endpoint(%s, event_types => %s)", (eid, patterns))
    refused(db, "54000", "SELECT webhook.alter_endpoint(%s, event_types => %s)", eid, patterns + ["x.*"])

    # 32 headers of 8192 bytes together, names and values.
    value = WIDE * ((8192 - 32 * 5) // 32 // 4)
    headers = {f"x-h{i:02d}": value for i in range(32)}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
    assert size <= 8192
    db.execute("SELECT webhook.alter_endpoint(%s, headers => %s)", (eid, json.dumps(headers)))
    refused(db, "54000", "SELECT webhook.alter_endpoint(%s, headers => %s)", eid,
            json.dumps({**headers, "x-h32": "v"}))
    refused(db, "54000", "SELECT webhook.alter_endpoint(%s, headers => %s)", eid,
            json.dumps({"x-big": WIDE * 2049}))


def test_the_widest_endpoint_still_disables_fails_dies_and_is_maintained(db):
    """Every side effect about the endpoint with the largest values still
    works, and so does maintain() for everyone."""
    eid = q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', description => %s)", widest_url(2048), "é" * 512)
    other = q1(db, "SELECT webhook.create_endpoint('https://example.com/other', '{a.*}')")
    db.execute("SELECT webhook.emit('a.x', '{}')")
    rows = q(db, "SELECT delivery_id, claim_token, endpoint_id FROM webhook.claim(10, '1 minute', 'w')")
    assert {r[2] for r in rows} == {eid, other}
    n = q1(db, """SELECT webhook.record(%s, %s, %s, %s, %s, %s, %s, 'w')""",
           [r[0] for r in rows], [r[1] for r in rows], [None] * 2, ["timeout"] * 2, [1.0] * 2, [None] * 2, [None] * 2)
    assert n == 2
    db.execute("UPDATE webhook.endpoint SET failing_since = now() - interval '6 days'")
    q1(db, "SELECT webhook.maintain()")
    assert q(db, "SELECT enabled FROM webhook.endpoint ORDER BY id") == [(False,), (False,)]
    db.execute("SELECT webhook.enable_endpoint(%s)", (eid,))
    db.execute("SELECT webhook.disable_endpoint(%s)", (eid,))
    kinds = [r[0] for r in q(db, "SELECT event_type FROM webhook.events WHERE event_type LIKE 'webhook.%%' ORDER BY id")]
    assert kinds.count("webhook.delivery.dead") == 2 and kinds.count("webhook.endpoint.disabled") == 3, kinds


def test_an_operational_event_that_cannot_be_written_stops_nothing(db):
    """The state change is made, the caller goes on, and the failure is a
    WARNING with its SQLSTATE, never silence."""
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', '{a.*}')")
    db.execute("""CREATE FUNCTION public.no_ops() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF NEW.event_type LIKE 'webhook.%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                        RETURN NEW; END $$""")
    db.execute("CREATE TRIGGER no_ops BEFORE INSERT ON webhook.event_log FOR EACH ROW EXECUTE FUNCTION public.no_ops()")
    warnings = []
    db.add_notice_handler(lambda d: warnings.append((d.severity_nonlocalized, d.message_primary)))
    try:
        db.execute("SELECT webhook.disable_endpoint(%s)", (eid,))
        assert q1(db, "SELECT enabled FROM webhook.endpoint WHERE id = %s", eid) is False
        db.execute("SELECT webhook.enable_endpoint(%s)", (eid,))
        db.execute("SELECT webhook.emit('a.x', '{}')")
        (did, token) = q(db, "SELECT delivery_id, claim_token FROM webhook.claim(10, '1 minute', 'w')")[0]
        assert q1(db, "SELECT webhook.record(%s, %s, '{410}', '{NULL}', '{1}', '{NULL}', '{NULL}', 'w')",
                  [did], [token]) == 1
        assert q1(db, "SELECT status FROM webhook.delivery WHERE id = %s", did) == "dead"
        assert q1(db, "SELECT enabled FROM webhook.endpoint WHERE id = %s", eid) is False
        q1(db, "SELECT webhook.maintain()")
    finally:
        db.execute("DROP TRIGGER no_ops ON webhook.event_log")
    lost = [m for s, m in warnings if s == "WARNING" and "was not written" in m]
    assert len(lost) == 4 and all("SQLSTATE P0001" in m for m in lost), warnings
    assert q1(db, "SELECT count(*) FROM webhook.events WHERE event_type LIKE 'webhook.%%'") == 0


def test_a_long_ordering_key_is_stored_as_its_digest_and_routing_goes_on(db):
    db.execute("CREATE TABLE docs (path text PRIMARY KEY, v int)")
    db.execute("SELECT webhook.track('docs')")
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', '{docs.*,app.*}', ordered => true)")
    short, long = "s" * 256, WIDE * 1000
    db.execute("INSERT INTO docs VALUES (%s, 1), (%s, 1)", (short, long))
    db.execute("UPDATE docs SET v = 2")
    db.execute("SELECT webhook.emit('app.x', '{}', %s)", (long,))
    assert q1(db, "SELECT webhook.route()") == 5
    digest = "sha256:" + hashlib.sha256(long.encode()).hexdigest()
    keys = [r[0] for r in q(db, "SELECT ordering_key FROM webhook.delivery WHERE endpoint_id = %s ORDER BY id", eid)]
    # A captured row's key is scoped by its table (the primary key's part
    # stored as its digest); emit's is the caller's own.
    row_short, row_long = "public.docs:" + short, "public.docs:" + digest
    assert keys == [row_short, row_long, row_short, row_long, digest]
    # Ordered by key (the digest orders as the key would): one delivery per
    # key is claimable at a time; the emitted event shares no row's queue.
    assert q1(db, "SELECT count(*) FROM webhook.claim(10, '1 minute', 'w')") == 3


def test_a_capture_trigger_made_by_hand_cannot_write_reserved_types(db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    for t in ["webhook.endpoint.failing", "webhook.test", "webhook"]:
        db.execute(f"CREATE TRIGGER forged AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION webhook._capture_row('{t}', '1', '')")
        e = refused(db, "39P01", "INSERT INTO t VALUES (1)")
        assert "reserved" in str(e)
        db.execute("DROP TRIGGER forged ON t")
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0


def test_a_worker_name_is_bounded(db):
    refused(db, "22001", "SELECT * FROM webhook.claim(1, '1 minute', %s)", WIDE * 33)
    assert q(db, "SELECT * FROM webhook.claim(1, '1 minute', %s)", WIDE * 32) == []
