"""Claim: leases within each endpoint's room, whichever dispatcher asks."""

import re
import threading
import time

from support.cluster import SECRET, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


class Concurrency:
    """A receiver behaviour that holds each request `hold` seconds and
    remembers how many were open at once."""

    def __init__(self, hold):
        self.hold = hold
        self.open = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, n, req):
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        time.sleep(self.hold)
        with self.lock:
            self.open -= 1
        return (204, {}, b"", 0)


def test_max_in_flight_holds_across_three_dispatchers(db, receiver, webhookd):
    seen = Concurrency(0.2)
    r = receiver(seen)
    q1(db, "SELECT webhook.create_endpoint(%s, '{probe.*}', %s, max_in_flight => 3)", r.url, SECRET)
    for _ in range(3):
        webhookd("--concurrency", "8", *FAST)
    time.sleep(0.5)
    with db.transaction():
        for i in range(30):
            db.execute("SELECT webhook.emit('probe.ping', jsonb_build_object('n', %s::int))", (i,))
    wait_for(lambda: r.count() >= 30, 30, what="30 deliveries")
    time.sleep(0.3)
    assert len(set(r.ids())) == 30
    assert seen.most <= 3, f"{seen.most} requests were open at once with max_in_flight 3"
    # ...and the room was used: three at a time, not one.
    assert seen.most == 3


def test_a_claim_visits_only_endpoints_with_work(db):
    """Endpoints with nothing waiting cost a claim nothing: with 2,000
    idle endpoints a claim takes about as long as with none."""

    def claim_ms():
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            db.execute("SELECT * FROM webhook.claim(100, '60 seconds', 'probe')")
            best = min(best, time.perf_counter() - t)
        return best * 1000

    alone = claim_ms()
    db.execute(
        "SELECT webhook.create_endpoint('https://example.invalid/' || g, ARRAY['t' || g || '.x'], %s)"
        " FROM generate_series(1, 2000) g",
        (SECRET,),
    )
    crowded = claim_ms()
    assert crowded < alone + 2.0, f"a claim took {crowded:.2f} ms with 2,000 idle endpoints, {alone:.2f} ms without"


def test_a_claim_reads_deliveries_by_key_whatever_the_statistics_said(db):
    """The plans a session caches at its first claim, taken while the
    deliveries table looked empty (a VACUUM ANALYZE before any delivery),
    still read each claimed row by its key when thousands have piled up:
    no plan node of a claim filters whole tables."""
    ep = q1(db, "SELECT webhook.create_endpoint('https://example.invalid/hook', '{probe.*}', %s, max_in_flight => 16)",
            SECRET)
    db.execute("SELECT count(webhook.emit('probe.ping', jsonb_build_object('n', g))) FROM generate_series(1, 3000) g")
    db.execute("VACUUM ANALYZE")
    db.execute("LOAD 'auto_explain'")
    for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_nested_statements = on",
                    "auto_explain.log_analyze = on", "client_min_messages = log"):
        db.execute(f"SET {setting}")
    plans = []
    db.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    claimed = 0
    while claimed < 3000:
        plans.clear()
        rows = db.execute(
            "SELECT delivery_id, claim_token FROM webhook.claim(16, '60 seconds', 'probe', '{}', 0, %s, %s)",
            ([ep], [16]),
        ).fetchall()
        assert rows, f"nothing claimed after {claimed}"
        claimed += len(rows)
        db.execute(
            "SELECT webhook.record(%s, %s, %s, %s, %s, %s, %s, 'probe')",
            ([r[0] for r in rows], [r[1] for r in rows], [200] * len(rows), [None] * len(rows),
             [1.0] * len(rows), [None] * len(rows), [None] * len(rows)),
        )
    # The last claim's plans, made when the table was empty, at 3,000 rows.
    removed = [int(n) for p in plans for n in re.findall(r"Rows Removed by Filter: (\d+)", p)]
    assert plans and max(removed, default=0) < 100, "\n\n".join(p for p in plans if "Removed" in p)


def test_an_endpoint_catching_up_on_its_backlog_does_not_hold_up_the_others_fresh_events(db):
    """A claim whose due part fills one endpoint (a recovered endpoint's
    backlog) still routes every other endpoint's fresh events: before, each
    such claim routed one event, and a healthy neighbour's events waited
    seconds in the outbox while the backlog drained."""
    backlogged = q1(db, "SELECT webhook.create_endpoint('https://example.invalid/c', '{probe.*}', %s)", SECRET)
    db.execute("SELECT count(webhook.emit('probe.ping', jsonb_build_object('n', g))) FROM generate_series(1, 200) g")
    assert q1(db, "SELECT webhook.route()") == 200
    healthy = q1(db, "SELECT webhook.create_endpoint('https://example.invalid/a', '{probe.*}', %s, max_in_flight => 100)",
                 SECRET)
    db.execute("SELECT count(webhook.emit('probe.ping', jsonb_build_object('n', g))) FROM generate_series(1, 100) g")
    rows = db.execute(
        "SELECT endpoint_id, count(*) FROM webhook.claim(300, '60 seconds', 'probe', '{}', 0, %s, %s) GROUP BY 1",
        ([backlogged, healthy], [10, 100]),
    ).fetchall()
    assert dict(rows) == {backlogged: 10, healthy: 100}
    # The backlogged endpoint's fresh deliveries wait behind its backlog.
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = %s", backlogged) == 300
