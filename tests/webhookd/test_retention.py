"""Retention: the outbox, deliveries and attempts live in generations of
partitions; webhook.maintain() starts new ones and drops whole expired
ones, never one holding an undelivered delivery."""

import time

import psycopg
import pytest

from support.cluster import SECRET, q, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


def maintain(db):
    """One upkeep, as webhookd runs it, settled: a generation whose lock was
    not granted within maintain()'s 100 ms (`deferred`: webhookd's claim
    every 200 ms holds the partitions for a moment, longer on a loaded
    machine) is looked at again by the next call, so the test calls again
    until none is deferred. Returns the last call's row, with `dropped` and
    `started` summed over the calls."""
    dropped, started = 0, False
    for _ in range(20):
        gen, s, d, kept, deferred = q(db, "SELECT generation, started, dropped, kept, deferred FROM webhook.maintain()")[0]
        dropped, started = dropped + d, started or s
        if deferred == 0:
            return gen, started, dropped, kept, deferred
        time.sleep(0.05)
    raise AssertionError(f"maintain() deferred a generation 20 times in a row: {(gen, s, d, kept, deferred)}")


def roll(db):
    """Start the next generation now (maintain() creates it a call ahead)."""
    gen = q1(db, "SELECT max(k) FROM webhook.generation WHERE started_at IS NOT NULL")
    for _ in range(3):
        maintain(db)
        time.sleep(0.05)
        if q1(db, "SELECT max(k) FROM webhook.generation WHERE started_at IS NOT NULL") > gen:
            return gen + 1
    raise AssertionError("no new generation started")


def partitions(db):
    return [r[0] for r in q(db, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                "WHERE i.inhparent = 'webhook.event_log'::regclass ORDER BY 1")]


def setup_table(db):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, total numeric)")
    db.execute("SELECT webhook.track('orders')")


def test_a_new_generation_takes_new_events_and_old_ones_stay_readable(db):
    setup_table(db)
    db.execute("SELECT webhook.set_retention('1 hour', '1 second')")
    db.execute("INSERT INTO orders (total) VALUES (1)")
    assert partitions(db) == ["event_log_p0"]
    maintain(db)  # creates generation 1 ahead of time
    assert partitions(db) == ["event_log_p0", "event_log_p1"]
    time.sleep(1.1)
    assert roll(db) == 1
    db.execute("INSERT INTO orders (total) VALUES (2)")
    db.execute("SELECT webhook.emit('probe.ping', '{}')")
    rows = q(db, "SELECT webhook._generation(id), event_type, tableoid::regclass::text FROM webhook.event_log ORDER BY id")
    assert rows == [
        (0, "orders.insert", "webhook.event_log_p0"),
        (1, "orders.insert", "webhook.event_log_p1"),
        (1, "probe.ping", "webhook.event_log_p1"),
    ]
    assert q1(db, "SELECT count(*) FROM webhook.events") == 3


def test_expired_generations_are_dropped_whole_and_pending_ones_kept(db, receiver, webhookd):
    ok, down = receiver(), receiver(lambda n, req: (503, {}, b"", 0))
    setup_table(db)
    q1(db, "SELECT webhook.create_endpoint(%s, '{orders.*}', %s)", ok.url, SECRET)
    failing = q1(db, "SELECT webhook.create_endpoint(%s, '{probe.*}', %s)", down.url, SECRET)
    webhookd("--maintain-interval", "0", "--retry-schedule", "30s", *FAST[2:])
    db.execute("SELECT webhook.set_retention('1 second', '1 second')")
    # Generation 0: delivered orders. Generation 1: one event that keeps failing.
    db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 20) g")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 20)
    maintain(db)
    time.sleep(1.1)
    roll(db)
    db.execute("SELECT webhook.emit('probe.ping', '{}')")
    wait_for(lambda: down.count() >= 1, what="the failing endpoint's first attempt")
    maintain(db)
    time.sleep(1.1)
    roll(db)
    time.sleep(1.1)
    gen, started, dropped, kept, deferred = maintain(db)
    # Generation 0 is gone (dropped by one of these calls); generation 1 is
    # past the retention too, but its delivery is pending, so it stays.
    assert kept == 1, (gen, started, dropped, kept, deferred)
    assert "event_log_p0" not in partitions(db)
    assert "event_log_p1" in partitions(db)
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 0
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE endpoint_id <> %s", failing) == 0
    assert q1(db, "SELECT status FROM webhook.deliveries WHERE endpoint_id = %s", failing) == "pending"
    assert q1(db, "SELECT count(*) FROM webhook.events WHERE event_type = 'probe.ping'") == 1
    # Dead now: kept for the retention, replayable within it, then dropped.
    db.execute("UPDATE webhook.delivery SET status = 'dead', completed_at = now() WHERE endpoint_id = %s", (failing,))
    after = maintain(db)
    assert after[2:4] == (1, 0), after
    assert "event_log_p1" not in partitions(db)
    assert q1(db, "SELECT count(*) FROM webhook.deliveries") == 0


def test_maintain_never_drops_events_routing_has_not_passed(db):
    setup_table(db)
    db.execute("SELECT webhook.set_retention('1 second', '1 second')")
    q1(db, "SELECT webhook.create_endpoint('https://example.invalid/x', '{orders.*}', %s)", SECRET)
    db.execute("INSERT INTO orders (total) VALUES (1)")
    maintain(db)
    time.sleep(1.1)
    roll(db)
    time.sleep(1.1)
    # Nothing has routed generation 0's event (no claim ran): it is kept.
    assert maintain(db)[3] == 1
    assert "event_log_p0" in partitions(db)
    assert q1(db, "SELECT webhook.route()") == 1
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'pending'") == 1
    # Routed into a pending delivery: still kept.
    assert maintain(db)[3] == 1


def test_webhookd_runs_maintain_and_a_generation_dropped_under_load_loses_nothing(db, receiver, webhookd):
    r = receiver()
    setup_table(db)
    q1(db, "SELECT webhook.create_endpoint(%s, '{orders.*}', %s)", r.url, SECRET)
    db.execute("SELECT webhook.set_retention('2 seconds', '1 second')")
    webhookd("--maintain-interval", "300ms", *FAST)
    sent = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 50) g")
        sent += 50
        time.sleep(0.05)
    wait_for(lambda: r.count() >= sent, 30, what=f"{sent} deliveries")
    time.sleep(0.5)
    assert len(set(r.ids())) == sent
    # Generations came and went while events flowed.
    assert q1(db, "SELECT max(k) FROM webhook.generation") >= 4
    wait_for(lambda: "event_log_p0" not in partitions(db), 10, what="generation 0 dropped")
    assert len(partitions(db)) <= 6


def test_set_retention_refuses_nonsense(db):
    for args, msg in [
        (("0 seconds", None), "retention must be a positive interval"),
        (("1 hour", "2 hours"), "generation_interval must be positive and no longer than the retention"),
        (("1 hour", "-1 second"), "generation_interval must be positive"),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=msg):
            db.execute("SELECT webhook.set_retention(%s, %s)", args)
    db.execute("SELECT webhook.set_retention('14 days')")
    assert q(db, "SELECT retention::text, generation_interval::text FROM webhook.settings") == [("14 days", "1 day")]
    db.execute("SELECT webhook.set_retention('2 minutes')")
    assert q1(db, "SELECT generation_interval::text FROM webhook.settings") == "00:01:00"


@pytest.mark.native_only("the native capture writes the generation's partition itself and names it; the portable "
                         "one inserts through the outbox, where PostgreSQL's own error says no partition was found")
def test_capture_refuses_a_generation_without_its_partition_clearly(db):
    setup_table(db)
    db.execute("SELECT setval('webhook.event_id_seq', webhook._generation_start(7))")
    with pytest.raises(psycopg.errors.UndefinedTable, match="no partition for generation 7"):
        db.execute("INSERT INTO orders (total) VALUES (1)")
