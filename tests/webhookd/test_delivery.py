"""Delivery end to end: real webhookd processes, real receivers, real failures."""

import json
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, cluster, connect, q, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


def setup_orders(db, url, *extra, **kw):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text, total numeric)")
    db.execute("SELECT webhook.track('orders')")
    args = ", ".join(f"{k} => %s" for k in kw)
    return q1(
        db,
        f"SELECT webhook.create_endpoint(%s, %s, %s{', ' + args if args else ''})",
        url,
        list(extra) or ["*"],
        SECRET,
        *kw.values(),
    )


def verify(req):
    Webhook(SECRET).verify(req["body"], req["headers"])


def test_thousand_orders_each_delivered_once_and_verified(db, receiver, webhookd):
    r = receiver()
    setup_orders(db, r.url, "orders.*", headers=json.dumps({"X-Shop": "demo"}))
    webhookd(*FAST)
    for batch in range(10):
        with db.transaction():
            for i in range(100):
                db.execute("INSERT INTO orders (customer, total) VALUES (%s, %s)", (f"c{batch}-{i}", i))
    wait_for(lambda: r.count() >= 1000, 60, what="1000 deliveries")
    time.sleep(0.5)
    assert r.count() == 1000
    ids = r.ids()
    assert len(set(ids)) == 1000
    bodies = dict(q(db, "SELECT id::text, body FROM webhook.event_log"))
    for req in r.requests:
        verify(req)
        assert req["body"].decode() == bodies[req["headers"]["webhook-id"]]
        assert req["headers"]["content-type"] == "application/json"
        assert req["headers"]["user-agent"].startswith("pg_webhook/")
        assert req["headers"]["x-shop"] == "demo"
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 1000)
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE http_status = 204") == 1000


def test_late_commit_is_delivered(db, dbname, receiver, webhookd):
    r = receiver()
    setup_orders(db, r.url)
    webhookd(*FAST)
    with connect(dbname) as t1, connect(dbname) as t2:
        t1.execute("BEGIN")
        t1.execute("INSERT INTO orders (customer) VALUES ('T1, committed last')")
        t2.execute("INSERT INTO orders (customer) VALUES ('T2')")
        wait_for(lambda: r.count() == 1, what="T2's event")
        t1.execute("COMMIT")
    wait_for(lambda: r.count() == 2, what="T1's event")
    assert [e["data"]["new"]["customer"] for e in r.events()] == ["T2", "T1, committed last"]


def test_kill9_loses_nothing(db, receiver, webhookd):
    r = receiver(lambda n, req: (204, {}, b"", 0.05))
    setup_orders(db, r.url)
    w = webhookd("--lease", "3s", "--concurrency", "32", *FAST)
    db.execute("INSERT INTO orders (customer) SELECT 'c' || g FROM generate_series(1, 400) g")
    wait_for(lambda: r.count() >= 100, 60, what="deliveries in flight")
    w.kill9()
    before = r.count()
    assert before < 400, "everything was delivered before the kill; the test proves nothing"
    webhookd("--lease", "3s", "--concurrency", "32", *FAST)
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 400, 60)
    ids = Counter(r.ids())
    assert len(ids) == 400
    dups = sum(c - 1 for c in ids.values())
    # Duplicates only within the in-flight window (concurrency 32).
    assert dups <= 32, dups
    for req in r.requests:
        verify(req)


def test_postgres_restart_under_webhookd(db, dbname, receiver, webhookd):
    r = receiver()
    setup_orders(db, r.url)
    w = webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('before')")
    wait_for(lambda: r.count() == 1)
    db.close()
    cluster("restart")
    with connect(dbname) as c:
        c.execute("INSERT INTO orders (customer) VALUES ('after restart')")
    wait_for(lambda: r.count() == 2, 30, what="delivery after the restart")
    assert r.events()[-1]["data"]["new"]["customer"] == "after restart"
    assert w.proc.poll() is None


def attempts(db, eid=None):
    return q(db, "SELECT http_status, error FROM webhook.attempts ORDER BY id")


def test_500_twice_then_200(db, receiver, webhookd):
    r = receiver(lambda n, req: (500 if n <= 2 else 200, {}, b"oops" if n <= 2 else b"ok", 0))
    setup_orders(db, r.url)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded")
    assert [a[0] for a in attempts(db)] == [500, 500, 200]
    assert q1(db, "SELECT attempts FROM webhook.deliveries") == 3
    assert q1(db, "SELECT response_excerpt FROM webhook.attempts ORDER BY id LIMIT 1") == "oops"
    assert len(set(r.ids())) == 1  # the same webhook-id on every attempt
    assert len({req["body"] for req in r.requests}) == 1  # byte-identical bodies
    assert len({req["headers"]["webhook-timestamp"] for req in r.requests}) >= 1


def test_webhook_timestamp_is_floored_never_in_the_receivers_future(db, receiver, webhookd):
    # Rounded, half of them would be up to 0.5 s ahead of the receiver's
    # clock (the same clock here); the Standard Webhooks libraries floor.
    r = receiver()
    setup_orders(db, r.url)
    webhookd(*FAST)
    for i in range(20):
        db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"c{i}",))
        time.sleep(0.05)
    wait_for(lambda: r.count() == 20)
    for req in r.requests:
        signed = int(req["headers"]["webhook-timestamp"])
        assert req["at"] - 5 < signed <= req["at"], (signed, req["at"])


def test_exhausted_schedule_is_dead_and_replay_repairs(db, receiver, webhookd):
    # Connection refused: nothing listens on this port.
    r = receiver()
    dead_url = r.url
    r.close()
    ep = setup_orders(db, dead_url)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "dead", 20)
    rows = attempts(db)
    assert len(rows) == 4 and all(s is None for s, _ in rows)
    assert all("connect" in e for _, e in rows), rows
    # Receiver back: replay.
    r2 = receiver()
    db.execute("UPDATE webhook.endpoint SET url = %s WHERE id = %s", (r2.url, ep))
    assert q1(db, "SELECT webhook.replay(%s, '-infinity')", ep) == 1
    wait_for(lambda: r2.count() == 1)
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded")
    assert q1(db, "SELECT webhook.redeliver(%s)", q1(db, "SELECT id FROM webhook.events")) == 1
    wait_for(lambda: r2.count() == 2)


def test_timeout_is_an_attempt(db, receiver, webhookd):
    r = receiver(lambda n, req: (200, {}, b"", 3 if n == 1 else 0))
    setup_orders(db, r.url, timeout="500 milliseconds")
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", 20)
    rows = attempts(db)
    assert rows[0][0] is None and "timeout" in rows[0][1]
    assert rows[-1][0] == 200


def test_410_disables_the_endpoint(db, receiver, webhookd):
    r = receiver(lambda n, req: (410, {}, b"", 0))
    ep = setup_orders(db, r.url)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "dead")
    assert q(db, "SELECT enabled, disabled_reason LIKE '%%410%%' FROM webhook.endpoint") == [(False, True)]
    db.execute("INSERT INTO orders (customer) VALUES ('y')")
    time.sleep(1)
    assert r.count() == 1
    assert q1(db, "SELECT count(*) FROM webhook.deliveries") == 1  # disabled: not routed
    db.execute("SELECT webhook.enable_endpoint(%s)", (ep,))


def test_retry_after_is_honoured(db, receiver, webhookd):
    r = receiver(lambda n, req: (503, {"Retry-After": "2"}, b"", 0) if n == 1 else (200, {}, b"", 0))
    setup_orders(db, r.url)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: r.count() == 2, 20)
    gap = r.requests[1]["at"] - r.requests[0]["at"]
    assert 1.8 <= gap < 6, gap


def test_huge_response_body_is_capped(db, receiver, webhookd):
    r = receiver(lambda n, req: (200, {}, 50 * 1024 * 1024, 0))
    setup_orders(db, r.url)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", 30)
    assert q1(db, "SELECT length(response_excerpt) FROM webhook.attempts") == 1024


def test_two_dispatchers_share_the_work(db, receiver, webhookd):
    # Each dispatcher may hold 8 requests (--concurrency), the endpoint 16
    # (max_in_flight, counted over both): one alone cannot use the
    # endpoint's room, so the other's claims find work. At 100 ms a
    # request neither finishes its share before the other claims.
    r = receiver(lambda n, req: (204, {}, b"", 0.1))
    setup_orders(db, r.url)
    webhookd("--batch", "20", "--concurrency", "8", "--worker", "w1", *FAST)
    webhookd("--batch", "20", "--concurrency", "8", "--worker", "w2", *FAST)
    time.sleep(0.5)
    for _ in range(10):
        db.execute("INSERT INTO orders (customer) SELECT 'c' FROM generate_series(1, 50)")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 500, 60)
    assert len(r.ids()) == 500 and len(set(r.ids())) == 500
    workers = dict(q(db, "SELECT worker, count(*) FROM webhook.attempts GROUP BY 1"))
    assert set(workers) == {"w1", "w2"}, workers


def test_hanging_endpoint_does_not_delay_others(db, receiver, webhookd):
    hang = receiver(lambda n, req: (200, {}, b"", 60))
    fast = receiver()
    setup_orders(db, hang.url, timeout="55 seconds", max_in_flight=4)
    q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", fast.url, SECRET)
    webhookd("--lease", "120s", *FAST)
    for i in range(20):
        db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"c{i}",))
        committed = time.time()
        wait_for(lambda: fast.count() == i + 1, 5, what=f"fast endpoint, event {i}")
        assert fast.requests[-1]["at"] - committed < 1.0
        time.sleep(0.05)
    assert hang.count() <= 4


def test_a_busy_endpoints_backlog_shows_as_its_pending_deliveries(db, receiver, webhookd):
    slow = receiver(lambda n, req: (200, {}, b"", 6))
    ep = setup_orders(db, slow.url, timeout="30 seconds", max_in_flight=1)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) SELECT 'c' FROM generate_series(1, 10)")
    # One request out, held for 6 s. The claims meanwhile find the endpoint
    # busy and route nothing, but webhookd routes the rest within about a
    # second, so the backlog is there to see long before the next request.
    wait_for(
        lambda: q1(db, "SELECT backlog FROM webhook.endpoint_health WHERE endpoint_id = %s", ep) == 10,
        4,
        what="the busy endpoint's backlog",
    )
    assert slow.count() <= 1


def test_down_endpoint_is_paused_not_hammered_and_catches_up(db, receiver, webhookd):
    healthy = receiver()
    gone = receiver()
    down_port = gone.port
    gone.close()  # connection refused from now on
    setup_orders(db, healthy.url)
    down = q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", f"http://127.0.0.1:{down_port}/hook", SECRET)
    w = webhookd(
        "--retry-schedule", ",".join(["200ms"] * 30), "--retry-jitter", "0", "--poll-interval", "200ms",
        "--breaker-threshold", "3", "--breaker-cooldown", "300ms", "--breaker-max-cooldown", "600ms",
    )
    n = 300
    for i in range(n // 50):
        db.execute("INSERT INTO orders (customer) SELECT 'c' FROM generate_series(1, 50)")
        time.sleep(0.2)
    wait_for(lambda: healthy.count() == n, 30, what="every event at the healthy endpoint")
    time.sleep(2)
    tried = q1(db, "SELECT count(*) FROM webhook.attempts WHERE endpoint_id = %s", down)
    # Without the breaker: every event attempted at once and again every
    # 200 ms (thousands). Paused: the requests already out when it opened,
    # then one probe per cooldown.
    assert tried < n, tried
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE endpoint_id = %s AND status = 'pending'", down) == n
    assert "paused" in w.output()
    # The receiver comes back: the probe succeeds and the backlog drains,
    # no delivery having burnt its retry schedule while paused.
    back = receiver(port=down_port)
    wait_for(lambda: len(set(back.ids())) == n, 30, what="the paused endpoint's backlog")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 2 * n)
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'dead'") == 0
    assert q1(db, "SELECT max(attempts) FROM webhook.deliveries WHERE endpoint_id = %s", down) < 30


def test_ordered_endpoint_keeps_per_key_order_under_retries(db, receiver, webhookd):
    failures = {"n": 0}

    def behaviour(n, req):
        body = json.loads(req["body"])
        new = body["data"]["new"]
        if new["id"] == 1 and new["customer"] == "v1" and failures["n"] < 3:
            failures["n"] += 1
            return (500, {}, b"", 0)
        return (204, {}, b"", 0)

    r = receiver(behaviour)
    setup_orders(db, r.url, ordered=True)
    # Retries a second apart: key 2's events (committed within milliseconds)
    # must all arrive while key 1 waits.
    webhookd("--retry-schedule", "1s,1s,1s", "--retry-jitter", "0", "--poll-interval", "200ms")
    db.execute("INSERT INTO orders (id, customer) VALUES (1, 'v1'), (2, 'w1')")
    for v in range(2, 6):
        db.execute("UPDATE orders SET customer = %s WHERE id = 1", (f"v{v}",))
        db.execute("UPDATE orders SET customer = %s WHERE id = 2", (f"w{v}",))
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 10, 30)
    ok = [json.loads(x["body"])["data"]["new"] for x in r.requests]
    key1 = [n["customer"] for n in ok if n["id"] == 1]
    # v1 failed three times, then everything for key 1 in commit order.
    assert key1 == ["v1", "v1", "v1", "v1", "v2", "v3", "v4", "v5"]
    key2 = [n["customer"] for n in ok if n["id"] == 2]
    assert key2 == ["w1", "w2", "w3", "w4", "w5"]
    # Key 2 was not held back while key 1 waited for its retries.
    last_v1 = max(i for i, n in enumerate(ok) if n["customer"] == "v1")
    assert ok.index({"id": 2, "customer": "w5", "total": None}) < last_v1


def test_ssrf_guard_refuses_loopback_without_the_flag_and_never_retries_a_refusal(db, receiver, webhookd):
    r = receiver()
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    for url in [r.url, f"http://[::ffff:127.0.0.1]:{r.port}/x", f"http://localhost:{r.port}/x"]:
        q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", url, SECRET)
    from support.cluster import dsn
    from support.webhookd import WEBHOOKD, webhookd_env
    import subprocess, os, signal as sig

    env = webhookd_env(DATABASE_URL=dsn(db.info.dbname))
    proc = subprocess.Popen(
        [str(WEBHOOKD), "run", "--retry-schedule", "100ms", "--poll-interval", "200ms"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        db.execute("INSERT INTO orders (customer) VALUES ('x')")
        wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'dead'") == 3, 20)
    finally:
        proc.send_signal(sig.SIGTERM)
        proc.wait(20)
    assert r.count() == 0
    errors = [e for (e,) in q(db, "SELECT error FROM webhook.attempts")]
    # One attempt each: a refusal is dead at once, since no retry can change it.
    assert len(errors) == 3 and all("SSRF guard" in e for e in errors), errors


def test_sigterm_drains_in_flight_and_releases_leases(db, receiver, webhookd):
    r = receiver(lambda n, req: (204, {}, b"", 1.0))
    setup_orders(db, r.url, max_in_flight=2)
    w = webhookd("--concurrency", "2", "--shutdown-grace", "5s", *FAST)
    db.execute("INSERT INTO orders (customer) SELECT 'c' FROM generate_series(1, 10)")
    wait_for(lambda: r.count() >= 2)
    assert w.term() == 0
    done = q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'")
    assert done >= 2 and r.count() == done
    leased = q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'pending' AND next_attempt_at > now()")
    assert leased == 0
    assert "webhookd stopped" in w.output()


def test_metrics_and_healthz(db, receiver, webhookd):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = receiver()
    setup_orders(db, r.url)
    webhookd("--metrics-addr", f"127.0.0.1:{port}", *FAST)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: r.count() == 1)

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.read().decode()

    # Per endpoint (tests/webhookd/test_metrics.py parses the rest).
    wait_for(lambda: re.search(r'webhookd_deliveries_total\{endpoint="\d+",outcome="succeeded"\} 1', get("/metrics")), 10)
    text = get("/metrics")
    assert "webhookd_attempt_duration_seconds_bucket" in text and "webhookd_backlog" in text
    assert get("/healthz") == "ok\n"


def test_rate_limit_spaces_requests(db, receiver, webhookd):
    r = receiver()
    setup_orders(db, r.url, rate_limit=5)
    webhookd(*FAST)
    db.execute("INSERT INTO orders (customer) SELECT 'c' FROM generate_series(1, 10)")
    wait_for(lambda: r.count() == 10, 20)
    span = r.requests[-1]["at"] - r.requests[0]["at"]
    assert span >= 1.6, span


def private_ca(d):
    """A CA and a certificate for localhost signed by it (openssl CLI)."""
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pg_webhook test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(d / "leaf.key"), "-out", str(d / "leaf.csr"))
    (d / "ext").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", str(d / "leaf.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"), "-out", str(d / "leaf.pem"))
    return d / "ca.pem", (str(d / "leaf.pem"), str(d / "leaf.key"))


def test_https_needs_a_trusted_certificate_and_keeps_connections(db, receiver, webhookd, tmp_path):
    ca, leaf = private_ca(tmp_path)
    r = receiver(tls=leaf)
    setup_orders(db, r.url, max_in_flight=4)
    # Not in the bundled Web PKI roots: refused at the handshake, nothing sent.
    w = webhookd("--retry-schedule", "1s", "--poll-interval", "200ms")
    db.execute("INSERT INTO orders (customer) VALUES ('first')")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.attempts") >= 1, 20)
    w.term()
    (error,) = q(db, "SELECT error FROM webhook.attempts ORDER BY id LIMIT 1")[0]
    assert "TLS handshake" in error and "certificate" in error, error
    assert r.count() == 0
    # Trusted through --ca-file: the retry and 50 more arrive, verified, over
    # a few kept-alive connections (not one per request). At most 4 are in
    # flight; a connection goes back to the pool just after its response
    # ends, so a request starting at that moment may open another.
    webhookd(*FAST, "--ca-file", str(ca))
    with db.transaction():
        for i in range(50):
            db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"c{i}",))
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 51, 30)
    assert r.count() == 51 and len(set(r.ids())) == 51
    for req in r.requests:
        verify(req)
    assert r.connections <= 12, r.connections


def test_a_bad_ca_file_is_a_clear_startup_error(db, tmp_path):
    from support.cluster import dsn
    from support.webhookd import WEBHOOKD, webhookd_env

    bad = tmp_path / "empty.pem"
    bad.write_text("not a certificate\n")
    out = subprocess.run(
        [str(WEBHOOKD), "run", "--ca-file", str(bad)],
        env=dict(__import__("os").environ, DATABASE_URL=dsn(db.info.dbname)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "no PEM certificate" in out.stderr, out.stderr


def test_a_multi_threaded_runtime_delivers_too(db, receiver, webhookd):
    r = receiver()
    setup_orders(db, r.url)
    webhookd(*FAST, "--threads", "3")
    with db.transaction():
        for i in range(200):
            db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"t{i}",))
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 200, 30)
    assert len(set(r.ids())) == 200


def test_zero_threads_is_refused(db):
    from support.cluster import dsn
    from support.webhookd import WEBHOOKD, webhookd_env

    out = subprocess.run(
        [str(WEBHOOKD), "run", "--threads", "0"],
        env=dict(__import__("os").environ, DATABASE_URL=dsn(db.info.dbname)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "--threads must be at least 1" in out.stderr, out.stderr
