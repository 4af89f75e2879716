"""Operations (extension/sql/operations.sql): pg_webhook's own events
(webhook.endpoint.failing / .recovered / .disabled / .enabled,
webhook.delivery.dead) delivered, signed, to an operator's endpoint
subscribed to webhook.*, never to the endpoint they are about nor to `*`
subscribers, also sent with NOTIFY; and auto-disable after a test-sized
period, resuming the pending deliveries when enabled again."""

import json
import time

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, connect, next_notification, q, q1, wait_for

FAST = ["--retry-jitter", "0", "--poll-interval", "100ms", "--breaker-threshold", "1000"]


def ops_events(r):
    """The operational events an operator's receiver got, verified."""
    out = []
    for req in r.requests:
        Webhook(SECRET).verify(req["body"], req["headers"])
        body = json.loads(req["body"])
        if body["type"].startswith("webhook."):
            out.append(body)
    return out


def types_of(events, about=None):
    return [e["type"] for e in events if about is None or e["data"]["endpoint_id"] == about]


def operator(db, receiver):
    ops = receiver()
    oid = q1(db, "SELECT webhook.create_endpoint(%s, '{webhook.*}', %s, description => 'operator')", ops.url, SECRET)
    return ops, oid


def test_failing_then_recovered_once_each_signed_and_only_to_the_operator(db, receiver, webhookd):
    ops, oid = operator(db, receiver)
    state = {"up": False}
    flaky = receiver(lambda n, req: (204, {}, b"", 0) if state["up"] else (503, {}, b"busy", 0))
    everything = receiver()
    fid = q1(db, "SELECT webhook.create_endpoint(%s, '{orders.*}', %s)", flaky.url, SECRET)
    q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", everything.url, SECRET)
    webhookd("--retry-schedule", ",".join(["200ms"] * 30), "--maintain-interval", "300ms", *FAST)
    for i in range(2):
        db.execute("SELECT webhook.emit('orders.insert', jsonb_build_object('n', %s::int))", (i,))
    # Failing for a while: several attempts, several looks of maintain().
    wait_for(lambda: "webhook.endpoint.failing" in types_of(ops_events(ops)), 20, what="the failing event")
    wait_for(lambda: q1(db, "SELECT sum(attempts) FROM webhook.deliveries WHERE endpoint_id = %s", fid) >= 8, 20,
             what="more failed attempts")
    state["up"] = True
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = %s AND status = 'succeeded'",
                        fid) == 2, 30, what="the flaky endpoint's deliveries")
    wait_for(lambda: "webhook.endpoint.recovered" in types_of(ops_events(ops)), 20, what="the recovered event")
    time.sleep(0.5)
    events = ops_events(ops)
    # Many failed attempts, one failing event; then one recovered.
    assert types_of(events, fid) == ["webhook.endpoint.failing", "webhook.endpoint.recovered"], events
    failing, recovered = events
    # The receiver answered: no error class (and never a dispatcher's text).
    assert failing["data"] == {"endpoint_id": fid, "url": flaky.url, "last_status": 503, "last_error_class": None}
    assert recovered["data"]["failing_since"]
    assert q1(db, "SELECT failing_since FROM webhook.endpoint_health WHERE endpoint_id = %s", fid) is None
    # `*` is every application event, not pg_webhook's own; and nothing
    # about the flaky endpoint went to it.
    assert all(not json.loads(r["body"])["type"].startswith("webhook.") for r in everything.requests)
    assert all(not json.loads(r["body"])["type"].startswith("webhook.") for r in flaky.requests)
    assert len(everything.requests) == 2


def test_dead_deliveries_gone_receivers_and_manual_changes_make_events(db, receiver, webhookd):
    ops, oid = operator(db, receiver)
    broken = receiver(lambda n, req: (500, {}, b"stack trace", 0))
    gone = receiver(lambda n, req: (410, {}, b"", 0))
    bid = q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', %s)", broken.url, SECRET)
    gid = q1(db, "SELECT webhook.create_endpoint(%s, '{b.*}', %s)", gone.url, SECRET)
    webhookd("--retry-schedule", "100ms", "--maintain-interval", "300ms", *FAST)
    dead_event = q1(db, "SELECT webhook.emit('a.x', '{}')")
    db.execute("SELECT webhook.emit('b.x', '{}')")
    wait_for(lambda: "webhook.delivery.dead" in types_of(ops_events(ops), bid)
             and "webhook.endpoint.disabled" in types_of(ops_events(ops), gid), 30, what="the dead and disabled events")
    events = ops_events(ops)
    dead = next(e for e in events if e["type"] == "webhook.delivery.dead" and e["data"]["endpoint_id"] == bid)
    assert dead["data"] == {"endpoint_id": bid, "event_id": dead_event, "event_type": "a.x", "attempts": 2,
                            "last_status": 500, "last_error_class": None}
    disabled = next(e for e in events if e["type"] == "webhook.endpoint.disabled")
    assert disabled["data"]["endpoint_id"] == gid and disabled["data"]["reason"] == "gone"
    # The receiver's 410 also ended its delivery.
    assert types_of(events, gid).count("webhook.delivery.dead") == 1
    assert q1(db, "SELECT enabled FROM webhook.endpoint WHERE id = %s", gid) is False

    db.execute("SELECT webhook.enable_endpoint(%s)", (gid,))
    db.execute("SELECT webhook.enable_endpoint(%s)", (gid,))  # already enabled: no second event
    db.execute("SELECT webhook.disable_endpoint(%s)", (bid,))
    wait_for(lambda: types_of(ops_events(ops)).count("webhook.endpoint.disabled") == 2, 20, what="the manual disable")
    time.sleep(0.3)
    events = ops_events(ops)
    assert types_of(events, gid).count("webhook.endpoint.enabled") == 1
    manual = [e for e in events if e["type"] == "webhook.endpoint.disabled" and e["data"]["endpoint_id"] == bid]
    assert manual[0]["data"]["reason"] == "manual"
    # A dead delivery of an operational event makes no event of its own,
    # and the operator endpoint never hears about itself.
    assert all(e["data"]["endpoint_id"] != oid for e in events)


def test_operational_events_are_notified_on_their_channel(db, dbname):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x')")
    with connect(dbname) as listener:
        listener.execute("LISTEN webhook_operational")
        db.execute("SELECT webhook.disable_endpoint(%s)", (eid,))
        got = [n for n in [next_notification(listener)] if n]
    assert got, "no notification"
    assert got[0].channel == "webhook_operational"
    # The payload is the event's id; the event is read where SELECT is needed.
    body = json.loads(q1(db, "SELECT body FROM webhook.events WHERE id = %s AND event_type LIKE 'webhook.%%'",
                         int(got[0].payload)))
    assert body["type"] == "webhook.endpoint.disabled" and body["data"]["endpoint_id"] == eid


def test_an_endpoint_failing_longer_than_the_auto_disable_period_is_disabled_and_resumes(db, receiver, webhookd):
    ops, oid = operator(db, receiver)
    state = {"up": False}
    r = receiver(lambda n, req: (204, {}, b"", 0) if state["up"] else (500, {}, b"", 0))
    eid = q1(db, "SELECT webhook.create_endpoint(%s, '{orders.*}', %s)", r.url, SECRET)
    db.execute("SELECT webhook.set_auto_disable('1 second')")
    # Many short retries: the deliveries are still pending when it is disabled.
    webhookd("--retry-schedule", ",".join(["300ms"] * 40), "--maintain-interval", "300ms", *FAST)
    db.execute("SELECT webhook.emit('orders.insert', '{}') FROM generate_series(1, 3)")
    wait_for(lambda: q1(db, "SELECT NOT enabled FROM webhook.endpoint WHERE id = %s", eid), 30, what="auto-disable")
    reason = q1(db, "SELECT disabled_reason FROM webhook.endpoint WHERE id = %s", eid)
    assert reason.startswith("auto-disabled: every attempt failed since "), reason
    wait_for(lambda: "webhook.endpoint.disabled" in types_of(ops_events(ops), eid), 20, what="the disabled event")
    disabled = next(e for e in ops_events(ops) if e["type"] == "webhook.endpoint.disabled")
    assert disabled["data"]["reason"] == "auto-disable" and disabled["data"]["failing_since"]
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = %s AND status = 'pending'", eid) == 3

    state["up"] = True
    db.execute("SELECT webhook.enable_endpoint(%s)", (eid,))
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = %s AND status = 'succeeded'",
                        eid) == 3, 30, what="the pending deliveries after enabling")
    assert q1(db, "SELECT enabled AND failing_since IS NULL FROM webhook.endpoint WHERE id = %s", eid)
    wait_for(lambda: "webhook.endpoint.enabled" in types_of(ops_events(ops), eid), 20, what="the enabled event")


def test_the_auto_disable_setting_and_the_reserved_event_types(db):
    db.execute("SELECT webhook.set_auto_disable(NULL)")
    assert q1(db, "SELECT auto_disable_after FROM webhook.settings") is None
    db.execute("SELECT webhook.set_auto_disable('5 days')")
    for bad in ["'0 seconds'", "'-1 day'"]:
        with pytest.raises(psycopg.Error) as err:
            db.execute(f"SELECT webhook.set_auto_disable({bad})")
        assert err.value.sqlstate == "22023" and err.value.diag.message_hint
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT webhook.emit('webhook.endpoint.failing', '{}')")
    assert err.value.sqlstate == "22023" and "reserved" in str(err.value)
    db.execute("CREATE TABLE webhook_log (id int PRIMARY KEY)")
    with pytest.raises(psycopg.Error) as err:
        db.execute("SELECT webhook.track('webhook_log', event_prefix => 'webhook')")
    assert err.value.sqlstate == "22023" and err.value.diag.message_hint
    assert q(db, "SELECT * FROM webhook.events") == []
