"""webhookd's /metrics (prometheus-client, OpenMetrics text) parsed with the
`prometheus_client` Python parser: labelled series per endpoint (outcomes,
status classes, attempt durations, backlog, oldest pending, circuit state),
claim and record round trips, database connection state; cardinality
capped by --metrics-max-endpoints; and the Grafana dashboard in
deploy/grafana/ asks only for metrics webhookd exports."""

import json
import re
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from support.cluster import ROOT, SECRET, free_port, q1, wait_for

pytestmark = pytest.mark.version_independent

FAST = ["--retry-schedule", "100ms", "--retry-jitter", "0", "--poll-interval", "100ms", "--breaker-threshold", "1000"]
DASHBOARD = ROOT / "deploy" / "grafana" / "webhookd.json"


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers["content-type"]
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families, family, name=None, **labels):
    out = []
    for s in families[family].samples if family in families else []:
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items()):
            out.append(s)
    return out


def value(families, family, name=None, **labels):
    return sum(s.value for s in samples(families, family, name, **labels))


def test_per_endpoint_series_are_exported_and_parse(db, receiver, webhookd):
    good = receiver()
    bad = receiver(lambda n, req: (503, {}, b"", 0))
    g = str(q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', %s)", good.url, SECRET))
    b = str(q1(db, "SELECT webhook.create_endpoint(%s, '{b.*}', %s)", bad.url, SECRET))
    port = free_port()
    webhookd("--metrics-addr", f"127.0.0.1:{port}", *FAST)
    db.execute("SELECT webhook.emit('a.x', '{}') FROM generate_series(1, 3)")
    db.execute("SELECT webhook.emit('b.x', '{}') FROM generate_series(1, 2)")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == 5, 20,
             what="5 finished deliveries")

    def settled():
        f = scrape(port)
        return f if value(f, "webhookd_deliveries", endpoint=b, outcome="dead") == 2 else None

    f = wait_for(settled, 20, 0.2, what="the outcomes in /metrics")
    assert value(f, "webhookd_deliveries", endpoint=g, outcome="succeeded") == 3
    assert value(f, "webhookd_deliveries", endpoint=b, outcome="retry") == 2
    assert value(f, "webhookd_http_responses", endpoint=g, **{"class": "2xx"}) == 3
    assert value(f, "webhookd_http_responses", endpoint=b, **{"class": "5xx"}) == 4
    assert f["webhookd_attempt_duration_seconds"].type == "histogram"
    assert value(f, "webhookd_attempt_duration_seconds", "webhookd_attempt_duration_seconds_count", endpoint=g) == 3
    assert value(f, "webhookd_claim_duration_seconds", "webhookd_claim_duration_seconds_count") > 0
    assert value(f, "webhookd_record_duration_seconds", "webhookd_record_duration_seconds_count") > 0
    assert value(f, "webhookd_claims", "webhookd_claims_total") > 0
    for conn in ["claim", "record", "listen", "metrics"]:
        assert value(f, "webhookd_database_connected", connection=conn) == 1, conn
    assert value(f, "webhookd_circuit_open", endpoint=g) == 0

    # A backlog shows per endpoint: an endpoint whose receiver is gone.
    down = str(q1(db, "SELECT webhook.create_endpoint('http://127.0.0.1:9/none', '{c.*}', %s, "
                      "retry_schedule => '{1h}')", SECRET))
    db.execute("SELECT webhook.emit('c.x', '{}') FROM generate_series(1, 4)")

    def backlog():
        f = scrape(port)
        return f if value(f, "webhookd_endpoint_backlog", endpoint=down) == 4 else None

    f = wait_for(backlog, 20, 0.3, what="the backlog in /metrics")
    assert value(f, "webhookd_backlog") == 4
    assert value(f, "webhookd_endpoint_oldest_pending_seconds", endpoint=down) >= 0


def test_endpoints_past_the_cap_share_one_series(db, receiver, webhookd):
    r = receiver()
    ids = [str(q1(db, "SELECT webhook.create_endpoint(%s, %s, %s)", r.url, [f"t{i}.*"], SECRET)) for i in range(3)]
    port = free_port()
    webhookd("--metrics-addr", f"127.0.0.1:{port}", "--metrics-max-endpoints", "1", *FAST)
    for i in range(3):
        db.execute("SELECT webhook.emit(%s, '{}')", (f"t{i}.x",))
    wait_for(lambda: r.count() == 3, 20, what="3 deliveries")
    f = wait_for(lambda: (lambda f: f if value(f, "webhookd_deliveries") == 3 else None)(scrape(port)), 10, 0.2,
                 what="3 outcomes in /metrics")
    labels = {s.labels["endpoint"] for s in samples(f, "webhookd_deliveries")}
    assert len(labels) == 2 and "other" in labels and labels - {"other"} <= set(ids), labels


def test_the_grafana_dashboard_asks_only_for_exported_metrics(db, receiver, webhookd):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["panels"]
    r = receiver()
    q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', %s)", r.url, SECRET)
    # A backlog too (a receiver that is not there), so every family has series.
    q1(db, "SELECT webhook.create_endpoint('http://127.0.0.1:9/none', '{b.*}', %s, retry_schedule => '{1h}')", SECRET)
    port = free_port()
    webhookd("--metrics-addr", f"127.0.0.1:{port}", *FAST)
    db.execute("SELECT webhook.emit('a.x', '{}')")
    db.execute("SELECT webhook.emit('b.x', '{}')")
    wait_for(lambda: r.count() == 1, 20, what="a delivery")
    f = wait_for(lambda: (lambda f: f if value(f, "webhookd_deliveries") >= 2 and "webhookd_endpoint_backlog" in f
                          else None)(scrape(port)), 20, 0.2, what="outcomes and a backlog in /metrics")
    exported = {s.name for fam in f.values() for s in fam.samples} | set(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs, "no queries"
    for e in exprs:
        names = set(re.findall(r"\b(webhookd_[a-z_]+)", e))
        assert names, e
        assert names <= exported, (e, names - exported)
    for p in dash["panels"]:
        assert p["title"] and p["type"] in {"timeseries", "stat", "table", "bargauge"}, p
        assert p.get("datasource", {}).get("uid") == "${datasource}", p["title"]
