"""Trace context: a transaction that sets webhook.traceparent (an
application's tracing middleware, SET LOCAL) writes events that carry it,
and webhookd sends it as the W3C `traceparent` header of their deliveries."""

import json
import subprocess
import time

from support.cluster import SECRET, dsn, free_port, q1, wait_for
from support.webhookd import WEBHOOKD, webhookd_env

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


# ------------------------------------------------- webhookd's own spans, OTLP
#
# The collector is the suite's recording HTTP server on 127.0.0.1, answering
# as an OTLP/HTTP collector does; what webhookd POSTs is decoded with
# OpenTelemetry's own protobuf definitions.

TRACE_ID = TP.split("-")[1]
PRODUCER_SPAN = TP.split("-")[2]


def collector_answer(n, req):
    return 200, {"content-type": "application/x-protobuf"}, b"", 0


def exported_spans(collector):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for req in list(collector.requests):
        assert req["path"] == "/v1/traces", req["path"]
        assert req["headers"]["content-type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(req["body"])
        for rs in export.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append((resource, s))
    return spans


def attrs(span):
    out = {}
    for a in span.attributes:
        v = a.value
        out[a.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def otlp_env(port, **extra):
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_SERVICE_NAME": "webhookd-under-test",
        # Export every 100 ms rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **extra,
    }


def test_webhookd_exports_its_spans_over_otlp_inside_the_producer_s_trace(db, receiver, webhookd):
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    collector = receiver(collector_answer)
    ok = receiver()
    failing = receiver(lambda n, req: (503, {}, b"", 0))
    ok_id = q1(db, "SELECT webhook.create_endpoint(%s, '{loyalty.*}', %s)", ok.url, SECRET)
    failing_id = q1(db, "SELECT webhook.create_endpoint(%s, '{loyalty.*}', %s)", failing.url, SECRET)
    with db.transaction():
        db.execute(f"SET LOCAL webhook.traceparent = '{TP}'")
        traced = q1(db, "SELECT webhook.emit('loyalty.points', '{}')")
    untraced = q1(db, "SELECT webhook.emit('loyalty.tier', '{}')")

    w = webhookd(env=otlp_env(collector.port))
    wait_for(lambda: ok.count() >= 2 and failing.count() >= 2, 20, what="both events at both endpoints")

    def posts():
        return [(r, s) for r, s in exported_spans(collector) if s.name == "POST"]

    wait_for(lambda: len(posts()) >= 4, 20, what="4 attempt spans exported")
    assert "exporting spans over OTLP/HTTP" in w.output()
    by_key = {}
    for resource, s in posts():
        assert resource["service.name"] == "webhookd-under-test"
        a = attrs(s)
        by_key[(a["webhook.event.id"], a["webhook.endpoint.id"])] = (s, a)
        assert s.kind == Span.SPAN_KIND_CLIENT
        assert a["http.request.method"] == "POST"
        assert a["server.address"] == "127.0.0.1"
        assert a["webhook.attempt"] == 1

    # The traced event's attempts are children of the producing
    # transaction's span, in its trace; the receiver is told the attempt's
    # own span as its parent.
    for endpoint in (ok_id, failing_id):
        s, _ = by_key[(traced, endpoint)]
        assert s.trace_id.hex() == TRACE_ID
        assert s.parent_span_id.hex() == PRODUCER_SPAN
    sent = {
        (json.loads(req["body"])["type"]): req["headers"]["traceparent"] for req in ok.requests
    }
    s, _ = by_key[(traced, ok_id)]
    assert sent["loyalty.points"] == f"00-{TRACE_ID}-{s.span_id.hex()}-01"

    # The untraced event's attempts start traces of their own, which the
    # receiver joins.
    s, _ = by_key[(untraced, ok_id)]
    assert s.parent_span_id == b"" and s.trace_id.hex() != TRACE_ID
    assert sent["loyalty.tier"] == f"00-{s.trace_id.hex()}-{s.span_id.hex()}-01"

    # How each attempt ended.
    s, a = by_key[(traced, ok_id)]
    assert a["http.response.status_code"] == 204 and a["webhook.outcome"] == "succeeded"
    assert s.status.code != Status.STATUS_CODE_ERROR
    s, a = by_key[(traced, failing_id)]
    assert a["http.response.status_code"] == 503 and a["error.type"] == "503"
    assert a["webhook.outcome"] == "retry"
    assert s.status.code == Status.STATUS_CODE_ERROR

    # webhookd's database round trips are spans too (a batch of outcomes is
    # written, and its span exported, after the attempts it records).
    def names():
        return {s.name for _, s in exported_spans(collector)}

    wait_for(lambda: {"webhook.claim", "webhook.record"} <= names(), 20, what="claim and record spans exported")
    claims = [attrs(s) for _, s in exported_spans(collector) if s.name == "webhook.claim"]
    assert any(c.get("webhook.claim.got", 0) >= 1 for c in claims)
    assert all(c["db.system.name"] == "postgresql" for c in claims)


def test_spans_are_not_exported_unless_a_collector_is_configured(db, receiver, webhookd):
    ok = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", ok.url, SECRET)
    with db.transaction():
        db.execute(f"SET LOCAL webhook.traceparent = '{TP}'")
        db.execute("SELECT webhook.emit('loyalty.points', '{}')")
    w = webhookd()
    wait_for(lambda: ok.count() >= 1, 20, what="the delivery")
    # The producer's context as it was written: no span of webhookd's own.
    assert ok.requests[0]["headers"]["traceparent"] == TP
    assert "OTLP" not in w.output()


def test_a_collector_that_hangs_or_is_gone_slows_no_delivery(db, receiver, webhookd):
    """The batch processor exports from its own thread: a collector that
    never answers (and one that refuses connections) costs spans, never a
    delivery's time."""
    hanging = receiver(lambda n, req: (200, {}, b"", 60))
    ok = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", ok.url, SECRET)
    for i in range(300):
        db.execute("SELECT webhook.emit('loyalty.points', jsonb_build_object('n', %s::int))", (i,))
    for port in (hanging.port, free_port()):
        before = ok.count()
        w = webhookd(env=otlp_env(port, OTEL_BSP_MAX_QUEUE_SIZE="64", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="8"))
        started = time.monotonic()
        if before == 0:
            wait_for(lambda: ok.count() >= 300, 30, what="300 deliveries")
        else:
            for i in range(300):
                db.execute("SELECT webhook.emit('loyalty.tier', jsonb_build_object('n', %s::int))", (i,))
            wait_for(lambda: ok.count() >= 600, 30, what="300 more deliveries")
        took = time.monotonic() - started
        assert took < 10, f"{took:.1f} s for 300 deliveries with the collector on port {port}"
        # Exiting waits for the exporter a bounded time only.
        t = time.monotonic()
        assert w.term(timeout=30) == 0
        assert time.monotonic() - t < 15
        if port != hanging.port:
            # Refused: said once (then at most once a minute), not per batch.
            assert w.output().count("spans could not be exported") == 1, w.output()
    assert hanging.count() >= 1


def test_a_collector_url_that_is_not_http_is_refused_at_start(dbname):
    out = subprocess.run(
        [str(WEBHOOKD), "run", "--otlp-endpoint", "grpc://127.0.0.1:4317"],
        env=webhookd_env(DATABASE_URL=dsn(dbname)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "--otlp-endpoint" in out.stderr and "http://" in out.stderr
