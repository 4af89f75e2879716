"""Endpoints, subscriptions, secrets, rotation, signing and the dispatcher role."""

import base64
import json
import re
import time

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from support import editions
from support.cluster import SECRET, connect, q, q1

VECTOR = dict(
    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
    ts=1614265330,
    body='{"test": 2432232314}',
    sig="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)


def claim(db, n=100):
    """Claimed deliveries, each with the headers webhookd sends: the
    endpoint's own plus the Standard Webhooks ones claim() signed."""
    cols = ["delivery_id", "claim_token", "event_id", "endpoint_id", "attempt", "url", "headers", "signature", "signed_at", "body"]
    rows = [dict(zip(cols, r)) for r in q(db, f"SELECT {', '.join(cols)} FROM webhook.claim(%s)", n)]
    bodies = {}
    for r in rows:
        # Each body comes once, on its event's first row (as webhookd reads it).
        if r["body"] is None:
            r["body"] = bodies[r["event_id"]]
        bodies[r["event_id"]] = r["body"]
        r["headers"] = {
            **r["headers"],
            "webhook-id": str(r["event_id"]),
            "webhook-timestamp": str(r.pop("signed_at")),
            "webhook-signature": r.pop("signature"),
        }
    return rows


def test_sign_and_verify_match_the_standard_webhooks_vector(db):
    v = VECTOR
    assert q1(db, "SELECT webhook.sign(%s, %s, %s, %s)", v["secret"], v["msg_id"], v["ts"], v["body"]) == v["sig"]
    assert q1(db, "SELECT webhook.verify(%s, %s, %s, %s, %s)", v["secret"], v["msg_id"], v["ts"], v["body"], v["sig"])
    assert not q1(db, "SELECT webhook.verify(%s, %s, %s, %s, %s)", v["secret"], v["msg_id"], v["ts"] + 1, v["body"], v["sig"])
    assert q1(
        db, "SELECT webhook.verify(%s, %s, %s, %s, %s)", v["secret"], v["msg_id"], v["ts"], v["body"], "v1,bm9wZQ== " + v["sig"]
    )


def test_generated_secrets(db):
    ep = q1(db, "SELECT webhook.create_endpoint('https://example.com/hook')")
    secret = q1(db, "SELECT webhook.endpoint_secret(%s)", ep)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) >= 24
    other = q1(db, "SELECT webhook.endpoint_secret(webhook.create_endpoint('https://example.com/other'))")
    assert other != secret


@pytest.mark.parametrize(
    "args, sqlstate, fragment",
    [
        ("'ftp://example.com/x'", "22023", "scheme"),
        ("'example.com/hook'", "22023", "invalid endpoint URL"),
        ("'https://user:pw@example.com/x'", "22023", "credentials"),
        ("'https:///nohost'", "22023", "invalid endpoint URL"),
        ("'https://example.com/a b'", "22023", "invalid endpoint URL"),
        ("NULL", "22023", "invalid endpoint URL"),
        ("'https://example.com/x', '{}'", "22023", "at least one"),
        ("'https://example.com/x', '{orders.*.x}'", "22023", "pattern"),
        ("'https://example.com/x', '{\"orders insert\"}'", "22023", "pattern"),
        ("'https://example.com/x', '{*}', 'whsec_c2hvcnQ='", "22023", "at least 24"),
        ("'https://example.com/x', '{*}', 'not-a-secret'", "22023", "whsec_"),
        ("'https://example.com/x', '{*}', 'whsec_!!!!'", "22023", "base64"),
        ("'https://example.com/x', headers => '{\"webhook-id\": \"x\"}'", "22023", "cannot be overridden"),
        ("'https://example.com/x', headers => '{\"Content-Length\": \"1\"}'", "22023", "cannot be overridden"),
        ("'https://example.com/x', headers => '{\"upgrade\": \"h2c\"}'", "22023", "never forwarded"),
        ("'https://example.com/x', headers => '{\"Proxy-Authorization\": \"x\"}'", "22023", "never forwarded"),
        ("'https://example.com/x', timeout => '10 minutes'", "22023", "timeout"),
    ],
)
def test_create_endpoint_rejects_bad_input(db, args, sqlstate, fragment):
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT webhook.create_endpoint({args})")
    assert err.value.sqlstate == sqlstate
    assert fragment in str(err.value)
    assert err.value.diag.message_hint
    assert q1(db, "SELECT count(*) FROM webhook.endpoint") == 0


def test_http_needs_the_setting(db):
    editions.set_allow_http(db, False)
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT webhook.create_endpoint('http://example.com/x')")
    assert "https" in str(err.value) and "allow_http" in err.value.diag.message_hint


@pytest.mark.parametrize(
    "fn",
    [
        "webhook.endpoint_secret(999)",
        "webhook.rotate_secret(999)",
        "webhook.disable_endpoint(999)",
        "webhook.enable_endpoint(999)",
        "webhook.delete_endpoint(999)",
        "webhook.send_test(999)",
        "webhook.replay(999, now())",
        "webhook.redeliver(999)",
    ],
)
def test_unknown_ids_are_clear_errors(db, fn):
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT {fn}")
    assert err.value.sqlstate == "P0002"
    assert "does not exist" in str(err.value)


def test_patterns_route_to_the_right_endpoints(db):
    db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    db.execute("CREATE TABLE reviews (id int PRIMARY KEY)")
    db.execute("SELECT webhook.track('orders'); SELECT webhook.track('reviews')")
    exact = q1(db, "SELECT webhook.create_endpoint('https://a.example/x', '{orders.insert}')")
    prefix = q1(db, "SELECT webhook.create_endpoint('https://b.example/x', '{orders.*}')")
    every = q1(db, "SELECT webhook.create_endpoint('https://c.example/x', '{*}')")
    two = q1(db, "SELECT webhook.create_endpoint('https://d.example/x', '{reviews.insert,loyalty.*}')")
    off = q1(db, "SELECT webhook.create_endpoint('https://e.example/x')")
    db.execute("SELECT webhook.disable_endpoint(%s)", (off,))
    db.execute("INSERT INTO orders VALUES (1); UPDATE orders SET id = 2; INSERT INTO reviews VALUES (1)")
    db.execute("SELECT webhook.emit('loyalty.points_earned', '{}'); SELECT webhook.emit('ordersx.insert', '{}')")
    db.execute("SELECT webhook.route()")
    got = {
        ep: sorted(types)
        for ep, types in q(
            db, "SELECT endpoint_id, array_agg(event_type) FROM webhook.deliveries GROUP BY 1"
        )
    }
    assert got == {
        exact: ["orders.insert"],
        prefix: ["orders.insert", "orders.update"],
        every: sorted(["orders.insert", "orders.update", "reviews.insert", "loyalty.points_earned", "ordersx.insert"]),
        two: ["loyalty.points_earned", "reviews.insert"],
    }
    # Views exist with the documented columns before any dispatcher ran.
    cols = [d.name for d in db.execute("SELECT * FROM webhook.deliveries LIMIT 0").description]
    for c in ["event_id", "endpoint_id", "event_type", "status", "attempts", "next_attempt_at", "last_http_status", "last_error"]:
        assert c in cols
    health = q(db, "SELECT endpoint_id, backlog, dead FROM webhook.endpoint_health ORDER BY 1")
    assert (every, 5, 0) in health


def test_claim_returns_signed_requests_a_reference_verifier_accepts(db):
    db.execute("SELECT webhook.create_endpoint('https://example.com/x', '{*}', %s, headers => '{\"X-Shop\": \"demo\"}')", (SECRET,))
    eid = q1(db, "SELECT webhook.emit('orders.insert', '{\"id\": 1, \"total\": 9.99}')")
    (c,) = claim(db)
    h = c["headers"]
    assert h["webhook-id"] == str(eid)
    assert abs(int(h["webhook-timestamp"]) - time.time()) < 5
    assert h["x-shop"] == "demo"
    assert c["body"] == q1(db, "SELECT body FROM webhook.event_log WHERE id = %s", eid)
    payload = Webhook(SECRET).verify(c["body"], h)
    assert payload["type"] == "orders.insert" and payload["data"] == {"id": 1, "total": 9.99}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(c["body"].replace("9.99", "0.01"), h)
    # Claimed: leased, not claimable again.
    assert claim(db) == []


def test_rotation_overlap_then_only_the_new_secret(db):
    ep = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', '{*}', %s)", SECRET)
    new = q1(db, "SELECT webhook.rotate_secret(%s, NULL, '2 seconds')", ep)
    assert new != SECRET and q1(db, "SELECT webhook.endpoint_secret(%s)", ep) == new
    db.execute("SELECT webhook.emit('a.b', '{}')")
    (c,) = claim(db)
    assert len(c["headers"]["webhook-signature"].split()) == 2
    Webhook(SECRET).verify(c["body"], c["headers"])
    Webhook(new).verify(c["body"], c["headers"])
    time.sleep(2.2)
    db.execute("SELECT webhook.emit('a.b', '{}')")
    (c,) = claim(db)
    assert len(c["headers"]["webhook-signature"].split()) == 1
    Webhook(new).verify(c["body"], c["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(c["body"], c["headers"])


def test_send_test_goes_to_one_endpoint(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example/x')")
    q1(db, "SELECT webhook.create_endpoint('https://b.example/x')")
    eid = q1(db, "SELECT webhook.send_test(%s)", a)
    (c,) = claim(db)
    assert c["endpoint_id"] == a and c["event_id"] == eid
    assert json.loads(c["body"])["type"] == "webhook.test"


def test_delete_endpoint_removes_its_state(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example/x')")
    db.execute("SELECT webhook.emit('a.b', '{}')")
    db.execute("SELECT webhook.route()")
    db.execute("SELECT webhook.delete_endpoint(%s)", (a,))
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 0
    assert q1(db, "SELECT count(*) FROM webhook.endpoint_secret") == 0


def test_dispatcher_role_can_claim_but_never_read_secrets(db, dbname):
    db.execute("DO $$ BEGIN CREATE ROLE webhookd_test LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute("SELECT webhook.grant_dispatcher('webhookd_test')")
    db.execute("SELECT webhook.create_endpoint('https://example.com/x', '{*}', %s)", (SECRET,))
    db.execute("SELECT webhook.emit('a.b', '{}')")
    with psycopg.connect(f"postgresql://webhookd_test@127.0.0.1:{db.info.port}/{dbname}", autocommit=True) as d:
        (c,) = claim(d)
        Webhook(SECRET).verify(c["body"], c["headers"])
        d.execute(
            "SELECT webhook.record(ARRAY[%s]::bigint[], ARRAY[%s]::int[], '{204}', '{NULL}', '{1.5}', '{NULL}', '{NULL}')",
            (c["delivery_id"], c["claim_token"]),
        )
        assert q1(d, "SELECT status FROM webhook.deliveries") == "succeeded"
        for forbidden in [
            "SELECT secret FROM webhook.endpoint_secret",
            "SELECT webhook.endpoint_secret(1)",
            "SELECT * FROM webhook.endpoint",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                d.execute(forbidden)
    # And a role without the grant cannot claim at all.
    db.execute("DO $$ BEGIN CREATE ROLE nobody_test LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    with psycopg.connect(f"postgresql://nobody_test@127.0.0.1:{db.info.port}/{dbname}", autocommit=True) as n:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            n.execute("SELECT * FROM webhook.claim()")


def test_stale_lease_report_does_not_clobber(db):
    db.execute("SELECT webhook.create_endpoint('https://example.com/x')")
    db.execute("SELECT webhook.emit('a.b', '{}')")
    (c,) = q(db, "SELECT delivery_id, claim_token FROM webhook.claim(10, '0 seconds')")
    time.sleep(0.05)
    (c2,) = q(db, "SELECT delivery_id, claim_token FROM webhook.claim(10)")
    assert c2[1] == c[1] + 1
    # The first worker's late failure report: nothing is written (only the
    # lease's holder writes attempts, so no dispatcher can make up an
    # endpoint's failures), and the count says so (webhookd logs it).
    n = q1(db, "SELECT webhook.record(ARRAY[%s]::bigint[], ARRAY[%s]::int[], '{500}', '{late}', '{1}', '{NULL}', '{NULL}')", *c)
    assert n == 0
    assert q1(db, "SELECT status FROM webhook.deliveries") == "pending"
    assert q1(db, "SELECT count(*) FROM webhook.attempts") == 0


def ok(db, rows):
    """Report 200 for claimed rows (delivery_id, claim_token, ...)."""
    ids = [r["delivery_id"] for r in rows]
    tokens = [r["claim_token"] for r in rows]
    n = len(rows)
    db.execute(
        "SELECT webhook.record(%s::bigint[], %s::int[], %s::int[], %s::text[], %s::float8[], %s::text[], %s::timestamptz[])",
        (ids, tokens, [200] * n, [None] * n, [1.0] * n, [None] * n, [None] * n),
    )


def test_claim_routes_and_leases_new_events_in_one_step(db):
    db.execute("SELECT webhook.create_endpoint('https://example.com/x')")
    db.execute("SELECT webhook.emit('a.b', jsonb_build_object('n', g)) FROM generate_series(1, 5) g")
    rows = claim(db, 3)
    assert [r["attempt"] for r in rows] == [1, 1, 1]
    assert [r["claim_token"] for r in rows] == [1, 1, 1]
    # In event order; only as many events are routed as were asked for,
    # each delivery created leased (never re-found through the due index).
    assert [json.loads(r["body"])["data"]["n"] for r in rows] == [1, 2, 3]
    assert q(db, "SELECT status, next_attempt_at > now(), claim_token FROM webhook.delivery ORDER BY id") == [
        ("pending", True, 1)] * 3
    rest = claim(db, 10)
    assert [json.loads(r["body"])["data"]["n"] for r in rest] == [4, 5]
    assert claim(db, 10) == []


def test_claim_respects_max_in_flight_and_excluded_endpoints_for_new_events(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x', max_in_flight => 2)")
    b = q1(db, "SELECT webhook.create_endpoint('https://b.example.com/x')")
    db.execute("SELECT webhook.emit('a.b', jsonb_build_object('n', g)) FROM generate_series(1, 4) g")
    rows = q(db, "SELECT endpoint_id, event_id FROM webhook.claim(100, exclude_endpoints => %s::bigint[])", [b])
    # a: capped at its max_in_flight; b: excluded (saturated in the caller).
    assert [r[0] for r in rows] == [a, a]
    assert q1(db, "SELECT count(*) FROM webhook.delivery WHERE status = 'pending'") == 4
    # a's two leases are live, whoever holds them: its max_in_flight is
    # full, for every dispatcher.
    rows = q(db, "SELECT endpoint_id, event_id FROM webhook.claim(100)")
    assert sorted(r[0] for r in rows) == [b, b, b, b]
    assert claim(db, 100) == []
    db.execute("UPDATE webhook.delivery SET next_attempt_at = now() - interval '1 second' WHERE endpoint_id = %s", (a,))
    # Expired leases are due again, and free their room.
    rows = q(db, "SELECT endpoint_id, event_id FROM webhook.claim(100)")
    assert [r[0] for r in rows] == [a, a]
    assert q1(db, "SELECT count(*) FROM webhook.delivery WHERE endpoint_id = %s", a) == 4


def test_claim_of_new_events_keeps_one_in_flight_per_ordering_key(db):
    db.execute("CREATE TABLE acct (id int PRIMARY KEY, balance int)")
    db.execute("SELECT webhook.track('acct')")
    db.execute("SELECT webhook.create_endpoint('https://example.com/x', ordered => true)")
    with db.transaction():
        db.execute("INSERT INTO acct VALUES (1, 0), (2, 0)")
        db.execute("UPDATE acct SET balance = 10 WHERE id = 1")
        db.execute("UPDATE acct SET balance = 20 WHERE id = 1")
    seen = []
    for _ in range(5):
        rows = claim(db, 100)
        keys = [json.loads(r["body"])["data"]["new"]["id"] for r in rows]
        assert len(keys) == len(set(keys)), "two deliveries of one key in flight"
        seen += [(json.loads(r["body"])["type"], json.loads(r["body"])["data"]["new"]) for r in rows]
        # While a key's delivery is in flight, its next one waits.
        assert claim(db, 100) == []
        ok(db, rows)
    assert [s for s in seen if s[1]["id"] == 1] == [
        ("acct.insert", {"id": 1, "balance": 0}),
        ("acct.update", {"id": 1, "balance": 10}),
        ("acct.update", {"id": 1, "balance": 20}),
    ]
    assert [s for s in seen if s[1]["id"] == 2] == [("acct.insert", {"id": 2, "balance": 0})]


def test_due_queue_is_per_endpoint_so_one_backlog_never_hides_another(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x', '{a.*}', max_in_flight => 50)")
    b = q1(db, "SELECT webhook.create_endpoint('https://b.example.com/x', '{b.*}')")
    # a's backlog is older than everything b has.
    db.execute("SELECT webhook.emit('a.x', jsonb_build_object('n', g)) FROM generate_series(1, 2000) g")
    db.execute("SELECT webhook.emit('b.x', jsonb_build_object('n', g)) FROM generate_series(1, 10) g")
    assert q1(db, "SELECT webhook.route()") == 2010
    rows = q(db, "SELECT endpoint_id FROM webhook.claim(100)")
    # a gets its max_in_flight, b is not left behind a's backlog.
    assert sorted(r[0] for r in rows) == [a] * 50 + [b] * 10
    # Left out (saturated or paused), a's due rows are not in b's way either.
    db.execute("SELECT webhook.emit('b.x', '{}') FROM generate_series(1, 5)")
    rows = q(db, "SELECT endpoint_id FROM webhook.claim(100, exclude_endpoints => %s::bigint[])", [a])
    assert [r[0] for r in rows] == [b] * 5


def test_claim_routes_only_events_whose_deliveries_fit_the_batch(db):
    for host in ("a", "b", "c"):
        db.execute(f"SELECT webhook.create_endpoint('https://{host}.example.com/x', '{{a.*}}')")
    db.execute("SELECT webhook.emit('a.b', jsonb_build_object('n', g)) FROM generate_series(1, 9) g")
    rows = claim(db, 6)
    # Two events for three endpoints: every delivery created is leased now,
    # none left to be found through the due queue.
    assert sorted(json.loads(r["body"])["data"]["n"] for r in rows) == [1, 1, 1, 2, 2, 2]
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 6
    assert q1(db, "SELECT count(*) FROM webhook.delivery WHERE claim_token = 0") == 0
    assert len(claim(db, 100)) == 21
    # Endpoints subscribed to fewer events than the first guess (4 endpoints,
    # most events for one): the claim routes on until its batch is full.
    db.execute("SELECT webhook.create_endpoint('https://d.example.com/x', '{only.d}', max_in_flight => 100)")
    db.execute("SELECT webhook.emit('only.d', jsonb_build_object('n', g)) FROM generate_series(1, 60) g")
    assert len(claim(db, 50)) == 50


def test_events_of_a_paused_endpoint_still_show_as_its_backlog(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x')")
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 30)")
    # webhookd leaves a paused (or saturated) endpoint out: nothing leased,
    # but the events are routed, so the backlog is there to see.
    assert q(db, "SELECT * FROM webhook.claim(100, exclude_endpoints => %s::bigint[])", [a]) == []
    assert q1(db, "SELECT backlog FROM webhook.endpoint_health WHERE endpoint_id = %s", a) == 30
    assert len(claim(db, 100)) == 16  # its max_in_flight, once it is back


def test_events_of_a_busy_endpoint_wait_to_be_routed_straight_into_leases(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x', max_in_flight => 50)")
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 30)")
    # The dispatcher holds all it may for a: no room, so nothing is routed
    # (a claim comes again when a request ends) ...
    assert q(db, "SELECT * FROM webhook.claim(100, cap_endpoints => %s::bigint[], cap_counts => '{0}')", [a]) == []
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 0
    # ... and then every delivery is created leased, none left pending to be
    # found and leased again through the due queue.
    rows = q(db, "SELECT delivery_id FROM webhook.claim(100, cap_endpoints => %s::bigint[], cap_counts => '{20}')", [a])
    assert len(rows) == 20
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 20
    assert q1(db, "SELECT count(*) FROM webhook.delivery WHERE claim_token = 0") == 0
    assert len(claim(db, 100)) == 10


def test_claim_gives_an_endpoint_no_more_than_the_dispatcher_has_room_for(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x', max_in_flight => 50)")
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 10)")

    def claim_capped(n):
        return q(db, "SELECT delivery_id FROM webhook.claim(100, cap_endpoints => %s::bigint[], cap_counts => %s::int[])",
                 [a], [n])

    assert len(claim_capped(3)) == 3  # new events, leased as routed
    assert len(claim_capped(4)) == 4  # the rest, through the due queue
    assert claim_capped(0) == []
    assert len(claim(db, 100)) == 3
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        q(db, "SELECT * FROM webhook.claim(100, cap_endpoints => %s::bigint[], cap_counts => '{}')", [a])
    assert "same order" in e.value.diag.message_hint


def test_claim_record_release_find_deliveries_by_key_after_the_table_grows(db):
    """Plans are cached per session while the queue is small; they must not
    turn into scans of every (pending) delivery once it holds thousands."""
    a = q1(db, "SELECT webhook.create_endpoint('https://a.example.com/x', max_in_flight => 1000)")
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 3)")
    ok(db, claim(db, 10))
    db.execute("SELECT webhook.release('{}', '{}')")
    # 20,000 retries scheduled an hour from now (no ANALYZE: the cached
    # plans stay as they are).
    db.execute("""INSERT INTO webhook.delivery (event_id, endpoint_id, next_attempt_at)
                  SELECT g, %s, now() + interval '1 hour' FROM generate_series(1000000, 1019999) g""", (a,))

    plans = []
    db.add_notice_handler(lambda d: plans.append(d.message_primary))
    db.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = notice"):
        db.execute(f"SET auto_explain.{setting}")
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 2)")
    rows = claim(db, 10)
    assert len(rows) == 2
    db.execute("SELECT webhook.release(%s::bigint[], %s::int[])", ([rows[0]["delivery_id"]], [rows[0]["claim_token"]]))
    ok(db, claim(db, 10) + rows[1:])
    db.execute("SET auto_explain.log_min_duration = -1")

    text = "\n".join(plans)
    assert "INSERT INTO webhook.attempt_log" in text and "FOR UPDATE OF d SKIP LOCKED" in text
    lines = text.splitlines()
    for i, line in enumerate(lines):
        assert not re.search(r"Seq Scan on delivery\b", line), line
        if re.search(r"(using|on) delivery_due\b", line):
            # Only a walk of one endpoint's own due queue, never all of it.
            assert re.search(r"Index Cond: \(+endpoint_id = ", lines[i + 1]), "\n".join(lines[i:i + 2])


def test_a_claim_that_finds_nothing_writes_nothing(db):
    db.execute("SELECT webhook.create_endpoint('https://example.com/x')")
    db.execute("SELECT webhook.emit('a.b', '{}')")
    assert len(claim(db)) == 1
    with db.transaction():
        assert claim(db) == []
        # No xid: an idle poll or a wake-up with nothing new costs no WAL
        # and no commit record.
        assert q1(db, "SELECT pg_current_xact_id_if_assigned()") is None
    db.execute("SELECT webhook.emit('a.b', '{}')")
    assert len(claim(db)) == 1


def test_a_claim_returns_each_body_once_however_many_endpoints_get_it(db):
    for i in range(3):
        db.execute("SELECT webhook.create_endpoint(%s)", (f"https://example.com/{i}",))
    db.execute("SELECT webhook.emit('a.b', '{\"x\": 1}')")
    db.execute("SELECT webhook.emit('a.b', '{\"x\": 2}')")
    rows = q(db, "SELECT event_id, body FROM webhook.claim(100)")
    assert len(rows) == 6
    with_body = [e for e, b in rows if b is not None]
    assert sorted(with_body) == sorted(set(e for e, _ in rows))
    # The body comes on the event's first row.
    seen = set()
    for e, b in rows:
        assert (b is not None) == (e not in seen)
        seen.add(e)


def test_a_claims_body_bytes_are_capped_and_the_rest_stays_due(db):
    db.execute("SELECT webhook.create_endpoint('https://example.com/a')")
    db.execute("SELECT webhook.create_endpoint('https://example.com/b')")
    for i in range(5):
        db.execute("SELECT webhook.emit('a.b', jsonb_build_object('pad', repeat('x', 1000), 'i', %s::int))", (i,))
    got = []
    while True:
        rows = q(db, "SELECT event_id, body FROM webhook.claim(100, max_body_bytes => 2500)")
        if not rows:
            break
        events = sorted(set(e for e, _ in rows))
        # Two ~1 KB bodies fit in 2,500 bytes, each sent to both endpoints.
        assert len(events) <= 2 and len(rows) == 2 * len(events)
        got += events
    assert got == sorted(got) and len(got) == 5
    # An event larger than the cap still goes, alone.
    db.execute("SELECT webhook.emit('a.b', jsonb_build_object('pad', repeat('x', 5000)))")
    assert len(q(db, "SELECT 1 FROM webhook.claim(100, max_body_bytes => 2500)")) == 2
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT * FROM webhook.claim(100, max_body_bytes => 0)")


def test_alter_endpoint_changes_only_what_it_is_given(db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/a', '{orders.*}', description => 'warehouse', "
                 "rate_limit => 5, max_in_flight => 3, headers => '{\"x-a\": \"1\"}')")
    before = q(db, "SELECT url, event_types, description, headers, timeout_ms, ordered, max_in_flight, rate_limit "
                   "FROM webhook.endpoint")[0]
    db.execute("SELECT webhook.alter_endpoint(%s)", (eid,))
    assert q(db, "SELECT url, event_types, description, headers, timeout_ms, ordered, max_in_flight, rate_limit "
                 "FROM webhook.endpoint")[0] == before
    db.execute("SELECT webhook.alter_endpoint(%s, url => 'https://example.com/b', timeout => '2 seconds', "
               "ordered => true)", (eid,))
    row = q(db, "SELECT url, timeout_ms, ordered, description, rate_limit, max_in_flight FROM webhook.endpoint")[0]
    assert row == ("https://example.com/b", 2000, True, "warehouse", 5, 3)
    # '' clears the description and 0 removes the rate limit (NULL keeps them).
    db.execute("SELECT webhook.alter_endpoint(%s, description => '', rate_limit => 0, event_types => '{*}')", (eid,))
    assert q(db, "SELECT description, rate_limit, event_types FROM webhook.endpoint")[0] == (None, None, ["*"])


@pytest.mark.parametrize("args,sqlstate", [
    ("url => 'ftp://x/y'", "22023"),
    ("event_types => '{}'", "22023"),
    ("timeout => '1 ms'", "22023"),
    ("max_in_flight => 0", "22023"),
    ("rate_limit => -1", "22023"),
    ("headers => '{\"host\": \"x\"}'", "22023"),
])
def test_alter_endpoint_refuses_what_create_endpoint_refuses(db, args, sqlstate):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/a')")
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT webhook.alter_endpoint({eid}, {args})")
    assert err.value.sqlstate == sqlstate
    assert err.value.diag.message_hint
    assert q1(db, "SELECT url FROM webhook.endpoint") == "https://example.com/a"
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT webhook.alter_endpoint(424242, description => 'x')")
    assert err.value.sqlstate == "P0002"


def test_endpoint_activity_counts_attempts_and_failures_per_bucket(db):
    a = q1(db, "SELECT webhook.create_endpoint('https://example.com/a')")
    b = q1(db, "SELECT webhook.create_endpoint('https://example.com/b')")
    db.execute("SELECT webhook.emit('x.y', '{}')")
    db.execute("SELECT webhook.route()")
    for ep, status, ago in [(a, 204, 1), (a, 500, 2), (a, None, 3), (b, 200, 50), (b, 503, 70)]:
        db.execute(
            "INSERT INTO webhook.attempt_log (delivery_id, event_id, endpoint_id, attempt, http_status, created_at) "
            "SELECT d.id, d.event_id, d.endpoint_id, 1, %s, now() - make_interval(mins => %s) "
            "FROM webhook.delivery d WHERE d.endpoint_id = %s", (status, ago, ep))
    rows = q(db, "SELECT endpoint_id, attempts, failures FROM webhook.endpoint_activity(now() - interval '1 hour', "
                 "'1 hour')")
    # b's attempt 70 minutes ago is outside the window.
    assert sorted(rows) == [(a, 3, 2), (b, 1, 0)]
    per5 = q(db, "SELECT endpoint_id, sum(attempts), count(*) FROM webhook.endpoint_activity() GROUP BY 1 ORDER BY 1")
    assert per5 == [(a, 3, 1), (b, 1, 1)]
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT * FROM webhook.endpoint_activity(now() - interval '1 year', '1 second')")
    assert err.value.sqlstate == "22023"
