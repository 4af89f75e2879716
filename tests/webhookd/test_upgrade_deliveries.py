"""Upgrades keep every delivery (README, "Releases and upgrades"): a
database holding deliveries in every state, made by the oldest release's
SQL with today's library (as a user's database has it after a package
upgrade), is updated with `ALTER EXTENSION pg_webhook UPDATE` while
webhookd runs: pending ones are delivered, succeeded ones are not sent
again, dead ones stay dead until replayed. The schema and privileges an
upgrade gives are tests/sql/test_upgrade.py."""

import base64
import json
import secrets
import time
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import connect, q, q1, wait_for
from support.upgrade import UPGRADABLE, current_version
from support.webhookd import Webhookd


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# Deliveries in every state are built through 0.1.0's own dispatcher API
# (claim / record / release), as its webhookd left them; the checks after the
# upgrade use only the interface kept between releases (docs/interface.md):
# webhook.events, deliveries, attempts, endpoint_health, emit, replay,
# enable_endpoint and webhookd.
OLDEST = "0.1.0"
# The "crashed" worker's lease: still running when the upgrade runs and
# webhookd starts, short enough not to slow the test down.
LEASE_S = 4
EVENTS = "SELECT id, event_type, body, payload, ordering_key, created_at FROM webhook.events"
DELIVERIES = "SELECT event_id, endpoint_id, status, attempts, last_http_status, last_error FROM webhook.deliveries"
ATTEMPTS = "SELECT event_id, endpoint_id, attempted_at, http_status, duration_ms, error FROM webhook.attempts"
HEALTH = "SELECT endpoint_id, enabled, backlog, dead FROM webhook.endpoint_health"


def keyed(conn, sql, n=1):
    """Rows of `sql` by their first n columns."""
    return {(r[0] if n == 1 else r[:n]): r[n:] for r in q(conn, sql)}


def changed(before, after):
    """Lines naming each entry of `before` that `after` lacks or has otherwise."""
    return [f"  {k}: {v} -> {after.get(k, '(missing)')}" for k, v in before.items() if after.get(k) != v]


def claim_one(db, event, endpoint, others, lease="60 seconds"):
    """The delivery of `event` to `endpoint` claimed the 0.1.0 way (the
    only one due) by a webhookd that never answers: (delivery_id,
    claim_token, event_id)."""
    rows = q(
        db,
        "SELECT delivery_id, claim_token, event_id FROM webhook.claim(max_deliveries => 1, lease => %s::interval, "
        "worker => 'old-webhookd', exclude_endpoints => %s)",
        lease,
        others,
    )
    assert [r[2] for r in rows] == [event], rows
    return rows[0]


def record(db, claimed, status, retry_at_sql):
    """0.1.0's record() of one attempt's outcome; retry_at_sql NULL: dead."""
    delivery, token, _ = claimed
    ok = 200 <= status < 300
    db.execute(
        "SELECT webhook.record(ARRAY[%s::bigint], ARRAY[%s::int], ARRAY[%s::int], ARRAY[%s::text], "
        f"ARRAY[%s::float8], ARRAY[%s::text], ARRAY[{retry_at_sql}]::timestamptz[], 'old-webhookd')",
        (delivery, token, status, None if ok else f"HTTP {status}", 12.5, "ok" if ok else "try later"),
    )


def emit(db, event_type, payload, key=None):
    return q1(db, "SELECT webhook.emit(%s, %s::jsonb, %s)", event_type, json.dumps(payload), key)


@contextmanager
def old_schema_new_library():
    """The release's SQL run with this build's library, as in a user's
    database after a package upgrade and before ALTER EXTENSION UPDATE:
    applications keep writing tracked tables and the old webhookd keeps
    working meanwhile, so a failure here is a failure of the upgrade too."""
    try:
        yield
    except psycopg.Error as e:
        pytest.fail(
            f"{OLDEST}'s schema with this build's library (a database after a package upgrade, before "
            f"ALTER EXTENSION UPDATE) fails: {e.sqlstate} {e}",
            pytrace=True,
        )


def received(r):
    """Event ids a receiver got, in order of arrival."""
    return [int(i) for i in r.ids()]


@pytest.mark.native_only("ALTER EXTENSION pg_webhook UPDATE from the native extension's frozen releases")
def test_an_upgrade_keeps_every_delivery_and_delivers_what_was_pending(new_database, receiver):
    if OLDEST not in UPGRADABLE:
        pytest.skip(f"this build is {OLDEST}: nothing to upgrade to")
    name = new_database("deliveries")
    main_r, off_r = receiver(), receiver()
    ord_r = receiver(lambda n, req: (503, {}, b"", 0) if n == 1 else (204, {}, b"", 0))
    keys = {"main": new_secret(), "ordered": new_secret(), "off": new_secret()}
    db = connect(name)
    with old_schema_new_library():
        db.execute(f"CREATE EXTENSION pg_webhook VERSION '{OLDEST}'")
        main = q1(db, "SELECT webhook.create_endpoint(%s, '{main.*}', %s)", main_r.url, keys["main"])
        ordered = q1(
            db, "SELECT webhook.create_endpoint(%s, '{ordered.*}', %s, ordered => true)", ord_r.url, keys["ordered"]
        )
        off = q1(db, "SELECT webhook.create_endpoint(%s, '{off.*}', %s)", off_r.url, keys["off"])
        label = {main: "main", ordered: "ordered", off: "off"}
        not_main = [ordered, off]
        db.execute("CREATE TABLE shop_orders (id int PRIMARY KEY, total numeric NOT NULL)")
        db.execute("SELECT webhook.track('shop_orders', '{insert,update}', event_prefix => 'main.orders')")

        def last_captured(event_type):
            return q1(db, "SELECT max(id) FROM webhook.events WHERE event_type = %s", event_type)

        # main: one succeeded, one dead, one failed with its retry due now, one
        # leased by a worker that crashed (the lease still running), one captured
        # and one emitted pending never attempted, two committed but not routed.
        succeeded = emit(db, "main.succeeded", {"state": "succeeded"})
        record(db, claim_one(db, succeeded, main, not_main), 200, "NULL")
        dead = emit(db, "main.dead", {"state": "dead"})
        record(db, claim_one(db, dead, main, not_main), 500, "NULL")
        retried = emit(db, "main.retried", {"state": "retried"})
        retried_claim = claim_one(db, retried, main, not_main)
        leased = emit(db, "main.leased", {"state": "leased"})
        claim_one(db, leased, main, not_main, f"{LEASE_S} seconds")
        record(db, retried_claim, 503, "clock_timestamp()")
        db.execute("INSERT INTO shop_orders VALUES (1, 10.5)")
        captured = last_captured("main.orders.insert")
        pending = emit(db, "main.pending", {"state": "pending"})
        # ordered: two events of one key pending, a third one not routed yet.
        k1 = [emit(db, "ordered.step", {"n": n}, "k1") for n in (1, 2)]
        # off: two pending deliveries, then disabled; an event committed while it
        # is disabled is not its delivery (README, Endpoints).
        off_pending = [emit(db, "off.ping", {"n": n}) for n in (1, 2)]
        db.execute("SELECT webhook.route()")
        db.execute("SELECT webhook.disable_endpoint(%s)", (off,))
        while_disabled = emit(db, "off.ping", {"n": 3})
        db.execute("SELECT webhook.route()")
        unrouted = [emit(db, "main.unrouted", {"state": "unrouted"})]
        db.execute("UPDATE shop_orders SET total = 11 WHERE id = 1")
        unrouted.append(last_captured("main.orders.update"))
        k1.append(emit(db, "ordered.step", {"n": 3}, "k1"))

        events_before = keyed(db, EVENTS)
        deliveries_before = keyed(db, DELIVERIES, 2)
        attempts_before = sorted(q(db, ATTEMPTS))
        health_before = keyed(db, HEALTH)
        lease_end = q1(
            db, f"SELECT extract(epoch FROM next_attempt_at)::float8 FROM webhook.deliveries WHERE event_id = {leased}"
        )
        assert lease_end > time.time() + 1, "the crashed worker's lease ran out before the upgrade: raise LEASE_S"
        # The set-up is what it says (in 0.1.0's views).
        states = {succeeded: "succeeded", dead: "dead", retried: "pending", leased: "pending", captured: "pending",
                  pending: "pending"}
        assert {e: deliveries_before[(e, main)][0] for e in states} == states
        assert len(attempts_before) == 3 and health_before[off][0] is False
        assert not {e for e, _ in deliveries_before} & {*unrouted, k1[2], while_disabled}
    db.close()

    with connect(name) as c:
        c.execute("ALTER EXTENSION pg_webhook UPDATE")
    db = connect(name)
    assert q1(db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhook'") == current_version()

    # Everything that was there reads the same, before anything runs.
    lost = changed(events_before, keyed(db, EVENTS))
    assert not lost, "events changed by the upgrade (id: before -> after):\n" + "\n".join(lost)
    lost = changed(deliveries_before, keyed(db, DELIVERIES, 2))
    assert not lost, (
        "deliveries changed by the upgrade ((event, endpoint): (status, attempts, last status, last error) "
        "before -> after):\n" + "\n".join(lost)
    )
    attempts_after = sorted(q(db, ATTEMPTS))
    assert attempts_after == attempts_before, f"attempts before the upgrade: {attempts_before}\nafter: {attempts_after}"
    health_after = keyed(db, HEALTH)
    for ep, (enabled, backlog, dead_n) in health_before.items():
        # Events committed but not routed yet may count in the backlog now.
        now = health_after.get(ep, (None, None, None))
        assert now[0] == enabled and now[2] == dead_n and backlog <= now[1] <= backlog + 3, (
            f"endpoint_health of {label[ep]} (enabled, backlog, dead): "
            f"{health_before[ep]} before the upgrade, {now} after"
        )

    # New events after the upgrade; one of the ordered key, behind its three.
    after = [emit(db, "main.after_upgrade", {"state": "new"})]
    k1.append(emit(db, "ordered.step", {"n": 4}, "k1"))
    expect_main = {retried, leased, captured, pending, *unrouted}
    w = Webhookd(name, "--retry-schedule", "200ms", "--retry-jitter", "0", "--poll-interval", "200ms")
    try:
        # Captured by a trigger installed before the upgrade, while webhookd runs.
        db.execute("INSERT INTO shop_orders VALUES (2, 20)")
        after.append(last_captured("main.orders.insert"))
        expect_main |= set(after)

        def missing():
            return {
                "main": sorted(expect_main - set(received(main_r))),
                "ordered": sorted(set(k1) - set(received(ord_r)))
            }

        try:
            wait_for(lambda: not any(missing().values()), 30)
        except AssertionError:
            pytest.fail(f"not delivered 30 s after the upgrade: {missing()}\nwebhookd:\n{w.output()[-3000:]}")
        time.sleep(0.5)
        # Disabled: nothing yet. Dead: stays dead until replayed.
        assert received(off_r) == [], "the disabled endpoint got deliveries"
        assert dead not in received(main_r), "the dead delivery was sent without a replay"
        status = q1(db, f"SELECT status FROM webhook.deliveries WHERE event_id = {dead} AND endpoint_id = {main}")
        assert status == "dead", f"the dead delivery ({dead}) is {status or 'gone'} after the upgrade"

        db.execute("SELECT webhook.enable_endpoint(%s)", (off,))
        assert q1(db, "SELECT webhook.replay(%s, '-infinity')", main) == 1
        try:
            wait_for(lambda: set(off_pending) <= set(received(off_r)) and dead in received(main_r), 30)
        except AssertionError:
            pytest.fail(
                f"after enable_endpoint and replay: off got {received(off_r)} of {off_pending}, "
                f"main {'got' if dead in received(main_r) else 'did not get'} the replayed {dead}\n"
                f"webhookd:\n{w.output()[-3000:]}"
            )
        time.sleep(0.5)
    finally:
        w.stop()

    # Each receiver got exactly its own deliveries, once (the ordered key's
    # first event twice: the receiver failed it once), signed with its own
    # endpoint's secret, the bodies byte for byte as stored before the upgrade.
    assert Counter(received(main_r)) == Counter(expect_main | {dead}), (
        f"main got {sorted(received(main_r))}, wanted each of {sorted(expect_main | {dead})} once "
        f"(not {succeeded}, which succeeded before the upgrade)"
    )
    assert received(ord_r) == [k1[0], *k1], (
        f"the ordered key {k1} arrived as {received(ord_r)} (its first one failed once)"
    )
    assert sorted(received(off_r)) == off_pending, (
        f"the endpoint disabled before the upgrade got {received(off_r)}: its pending {off_pending}, "
        f"not {while_disabled}, committed while it was disabled"
    )
    bodies = dict(q(db, "SELECT id, body FROM webhook.events"))
    for r, key in ((main_r, keys["main"]), (ord_r, keys["ordered"]), (off_r, keys["off"])):
        for req in r.requests:
            Webhook(key).verify(req["body"], req["headers"])
            event = int(req["headers"]["webhook-id"])
            stored = events_before[event][1] if event in events_before else bodies[event]
            assert req["body"].decode() == stored, f"event {event}: sent {req['body']!r}, stored {stored!r}"
    # The crashed worker's lease was honoured: nobody else sent it before it ran out.
    leased_at = min(req["at"] for req in main_r.requests if int(req["headers"]["webhook-id"]) == leased)
    assert leased_at >= lease_end - 0.05, (
        f"the leased delivery went {lease_end - leased_at:.2f} s before its lease ran out"
    )

    # What the views say afterwards: everything delivered, the retried one on
    # its second attempt, the attempts from before the upgrade still there,
    # the events as they were.
    final = keyed(db, DELIVERIES, 2)
    for ep, r in ((main, main_r), (ordered, ord_r), (off, off_r)):
        mine = {e: v[0] for (e, p), v in final.items() if p == ep}
        done_before = {succeeded} if ep == main else set()
        assert mine == {e: "succeeded" for e in {*received(r), *done_before}}, f"{label[ep]}: deliveries {mine}"
    assert final[(retried, main)][:2] == ("succeeded", 2)
    attempts_final = q(db, ATTEMPTS)
    assert not [a for a in attempts_before if a not in attempts_final], "attempts from before the upgrade were lost"
    assert len(attempts_final) == len(attempts_before) + sum(r.count() for r in (main_r, ord_r, off_r))
    health = keyed(db, HEALTH)
    assert health == {ep: (True, 0, 0) for ep in label}, f"endpoint_health (enabled, backlog, dead): {health}"
    lost = changed(events_before, keyed(db, EVENTS))
    assert not lost, "events changed (id: before -> after):\n" + "\n".join(lost)
    db.close()
