"""Trace context: a transaction that sets webhook.traceparent (an
application's tracing middleware, SET LOCAL) writes events that carry it,
and webhookd sends it as the W3C `traceparent` header of their deliveries."""

from conftest import SECRET, q1, wait_for

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_producing_transaction_s_traceparent_reaches_the_receiver(db, receiver, webhookd):
    r = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", r.url, SECRET)
    db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
    db.execute("SELECT webhook.track('orders')")
    with db.transaction():
        db.execute(f"SET LOCAL webhook.traceparent = '{TP}'")
        db.execute("INSERT INTO orders (total) VALUES (1)")
        db.execute("SELECT webhook.emit('loyalty.points', '{}')")
    # Not set, and set to something that is not a traceparent: no header,
    # and the application's transaction is not failed by it.
    db.execute("INSERT INTO orders (total) VALUES (2)")
    with db.transaction():
        db.execute("SET LOCAL webhook.traceparent = 'not-a-trace'")
        db.execute("INSERT INTO orders (total) VALUES (3)")
    webhookd()
    wait_for(lambda: r.count() >= 4, 20, what="4 deliveries")
    by_type = {}
    for req in r.requests:
        body = req["body"].decode() if isinstance(req["body"], bytes) else req["body"]
        by_type.setdefault(body.split('"type":"')[1].split('"')[0], []).append(req["headers"].get("traceparent"))
    assert sorted(by_type["orders.insert"], key=str) == sorted([TP, None, None], key=str)
    assert by_type["loyalty.points"] == [TP]
    assert q1(db, "SELECT count(*) FROM webhook.event_log WHERE traceparent = %s", TP) == 2
