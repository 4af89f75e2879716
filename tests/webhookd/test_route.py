"""Route: committed events reach the endpoints that want them, and an event
an endpoint wants is never held up by events nobody wants (README,
Guarantees)."""

import time

from support.cluster import SECRET, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


def bulk_orders(db, n):
    db.execute("CREATE TABLE IF NOT EXISTS bulk_orders (id bigserial PRIMARY KEY, total numeric)")
    db.execute("SELECT webhook.track('bulk_orders')")
    db.execute("INSERT INTO bulk_orders (total) SELECT g FROM generate_series(1, %s) g", (n,))


# Routing passes events nobody wants at 100,000 a second or more (the test
# below), in a claim's growing chunks; a wanted event behind 100,000 of them
# waits for those chunks and one more claim: 1.0-1.15 s on the 2-core test
# machine. The bound says "about a second", with room for a loaded machine.
WANTED_WITHIN = 1.5


def seconds_to_receipt(db, r):
    """Emit one probe.ping; seconds from its commit to its receipt."""
    committed = time.monotonic()
    db.execute("SELECT webhook.emit('probe.ping', '{}')")
    wait_for(lambda: r.count() >= 1, 30, interval=0.005, what="the probe event")
    return time.monotonic() - committed


def test_a_wanted_event_is_not_held_up_by_100000_events_nobody_wants(db, receiver, webhookd):
    r = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{probe.*}', %s)", r.url, SECRET)
    webhookd(*FAST)
    bulk_orders(db, 100_000)
    took = seconds_to_receipt(db, r)
    assert took < WANTED_WITHIN, f"the wanted event arrived {took:.2f} s after its commit"
    assert r.count() == 1
    assert q1(db, "SELECT count(*) FROM webhook.deliveries") == 1


def test_a_disabled_endpoints_events_do_not_hold_up_another_endpoint(db, receiver, webhookd):
    probe, off = receiver(), receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{probe.*}', %s)", probe.url, SECRET)
    disabled = q1(db, "SELECT webhook.create_endpoint(%s, '{bulk_orders.*}', %s)", off.url, SECRET)
    db.execute("SELECT webhook.disable_endpoint(%s)", (disabled,))
    webhookd(*FAST)
    bulk_orders(db, 100_000)
    took = seconds_to_receipt(db, probe)
    assert took < WANTED_WITHIN, f"the wanted event arrived {took:.2f} s after its commit"
    # Events committed while an endpoint is disabled are not its deliveries.
    db.execute("SELECT webhook.enable_endpoint(%s)", (disabled,))
    db.execute("INSERT INTO bulk_orders (total) VALUES (1)")
    wait_for(lambda: off.count() >= 1, 10, what="the enabled endpoint's next event")
    time.sleep(0.3)
    assert off.count() == 1


def test_route_passes_events_nobody_wants_at_100000_per_second(db):
    q1(db, "SELECT webhook.create_endpoint('https://example.invalid/hook', '{probe.*}', %s)", SECRET)
    bulk_orders(db, 100_000)
    started = time.monotonic()
    total = 0
    while n := q1(db, "SELECT webhook.route(100000)"):
        total += n
    took = time.monotonic() - started
    assert total == 100_000
    assert q1(db, "SELECT count(*) FROM webhook.deliveries") == 0
    rate = total / took
    assert rate >= 100_000, f"routed {rate:,.0f} unmatched events/s"


def test_wanted_events_among_many_unwanted_ones_all_arrive_in_commit_order(db, receiver, webhookd):
    r = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{probe.*}', %s, ordered => true)", r.url, SECRET)
    db.execute("CREATE TABLE IF NOT EXISTS bulk_orders (id bigserial PRIMARY KEY, total numeric)")
    db.execute("SELECT webhook.track('bulk_orders')")
    webhookd(*FAST)
    for i in range(20):
        with db.transaction():
            db.execute("INSERT INTO bulk_orders (total) SELECT g FROM generate_series(1, 2000) g")
            db.execute("SELECT webhook.emit('probe.ping', jsonb_build_object('n', %s::int), 'k')", (i,))
    wait_for(lambda: r.count() >= 20, 30, what="20 probe events")
    time.sleep(0.3)
    assert [e["data"]["n"] for e in r.events()] == list(range(20))
