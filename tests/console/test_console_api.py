"""`webhookd console`'s REST API (/api/v1) against a real console, database,
webhookd and receivers: every route with good input, bad input, no token,
the read-only token and a wrong token. Errors are JSON {code, message, hint}
with the SQL API's SQLSTATE; bad input is a 4xx, never a 5xx."""

import re
import socket
import time

import httpx
import pytest

from support.cluster import SECRET, q1, wait_for
from support.console import ADMIN_TOKEN, READ_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
FAST = ["--retry-schedule", "100ms,100ms", "--retry-jitter", "0", "--poll-interval", "100ms"]


@pytest.fixture
def api(console):
    with httpx.Client(base_url=console.url, timeout=10) as c:
        yield c


def error_of(r, status, code=None):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) >= {"code", "message", "hint"}, body
    assert body["message"], body
    if code:
        assert body["code"] == code, body
    return body


def create(api, url, **kw):
    r = api.post("/api/v1/endpoints", json={"url": url, **kw}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()


# Authentication.

ROUTES = [
    ("GET", "/api/v1/endpoints", None),
    ("POST", "/api/v1/endpoints", {"url": "https://example.com/x"}),
    ("GET", "/api/v1/endpoints/1", None),
    ("PATCH", "/api/v1/endpoints/1", {"description": "x"}),
    ("DELETE", "/api/v1/endpoints/1", None),
    ("POST", "/api/v1/endpoints/1/enable", None),
    ("POST", "/api/v1/endpoints/1/disable", None),
    ("POST", "/api/v1/endpoints/1/rotate-secret", None),
    ("POST", "/api/v1/endpoints/1/reveal-secret", None),
    ("POST", "/api/v1/endpoints/1/test", None),
    ("POST", "/api/v1/endpoints/1/replay", {"since": "-infinity"}),
    ("GET", "/api/v1/deliveries", None),
    ("GET", "/api/v1/deliveries/1/1", None),
    ("POST", "/api/v1/deliveries/1/1/redeliver", None),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/events/1", None),
    ("POST", "/api/v1/events/1/redeliver", None),
    ("GET", "/api/v1/event-types", None),
]


def test_no_token_or_a_wrong_one_gets_401_on_every_route(console):
    for i, (method, path, body) in enumerate(ROUTES):
        # Each route from an address of its own: wrong tokens from one
        # address are throttled (tests/console/test_console_security.py).
        transport = httpx.HTTPTransport(local_address=f"127.0.1.{i + 1}")
        with httpx.Client(base_url=console.url, timeout=10, transport=transport) as api:
            for headers in [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                            {"Authorization": f"Basic {ADMIN_TOKEN}"}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}]:
                r = api.request(method, path, json=body, headers=headers)
                error_of(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == "Bearer"


def test_the_read_only_token_reads_and_changes_nothing(api, db):
    e = create(api, "https://example.com/ro", headers={"authorization": "Bearer receiver-credential"})
    eid = e["endpoint"]["id"]
    r = api.get(f"/api/v1/endpoints/{eid}", headers=READ)
    assert r.status_code == 200
    # Header values often hold a receiver's credentials.
    assert r.json()["headers"] == {"authorization": "(hidden)"}
    assert api.get(f"/api/v1/endpoints/{eid}", headers=ADMIN).json()["headers"] == {
        "authorization": "Bearer receiver-credential"}
    for method, path, body in ROUTES:
        path = path.replace("/1", f"/{eid}", 1) if "endpoints" in path else path
        r = api.request(method, path, json=body, headers=READ)
        if method == "GET":
            assert r.status_code in (200, 404), (path, r.text)
        else:
            error_of(r, 403, "forbidden")
    assert q1(db, "SELECT count(*) FROM webhook.endpoint") == 1
    assert q1(db, "SELECT enabled FROM webhook.endpoint") is True


def test_the_openapi_document_is_served_and_lists_every_route(api):
    r = api.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for method, path, _ in ROUTES:
        templ = (path.replace("/endpoints/1", "/endpoints/{id}").replace("/events/1", "/events/{id}")
                 .replace("/deliveries/1/1", "/deliveries/{event_id}/{endpoint_id}"))
        assert (method, templ) in documented, (method, templ)


# Endpoints.

def test_endpoints_are_created_read_changed_and_deleted_through_the_sql_api(api, db):
    c = create(api, "https://example.com/hooks", event_types=["orders.*", "reviews.insert"], description="warehouse",
               max_in_flight=4, rate_limit=10, timeout_ms=2000, ordered=True, secret=SECRET)
    e = c["endpoint"]
    assert c["secret"] == SECRET
    assert e["event_types"] == ["orders.*", "reviews.insert"]
    assert (e["max_in_flight"], e["rate_limit"], e["timeout_ms"], e["ordered"]) == (4, 10, 2000, True)
    assert e["enabled"] and e["health"]["backlog"] == 0 and e["health"]["success_rate_last_hour"] is None
    assert len(e["health"]["activity"]["attempts"]) == 12
    # Defaults come from create_endpoint itself.
    d = create(api, "https://example.com/defaults")["endpoint"]
    assert (d["event_types"], d["max_in_flight"], d["timeout_ms"], d["rate_limit"]) == (["*"], 16, 15000, None)
    assert d["description"] is None
    assert d["headers"] == {}

    listed = api.get("/api/v1/endpoints", headers=ADMIN).json()
    assert [x["id"] for x in listed] == [e["id"], d["id"]]

    r = api.patch(f"/api/v1/endpoints/{e['id']}", json={"description": None, "rate_limit": None, "max_in_flight": 8},
                  headers=ADMIN)
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["description"], u["rate_limit"], u["max_in_flight"]) == (None, None, 8)
    assert u["url"] == e["url"] and u["event_types"] == e["event_types"]
    r = api.patch(f"/api/v1/endpoints/{e['id']}", json={"url": "https://example.com/new", "event_types": ["*"],
                                                        "headers": {"X-Tenant": "a"}}, headers=ADMIN)
    assert r.json()["url"] == "https://example.com/new" and r.json()["headers"] == {"x-tenant": "a"}
    assert q1(db, "SELECT url FROM webhook.endpoint WHERE id = %s", e["id"]) == "https://example.com/new"

    r = api.delete(f"/api/v1/endpoints/{e['id']}", headers=ADMIN)
    assert r.status_code == 204
    error_of(api.get(f"/api/v1/endpoints/{e['id']}", headers=ADMIN), 404, "not_found")
    error_of(api.delete(f"/api/v1/endpoints/{e['id']}", headers=ADMIN), 404, "no_data_found")


@pytest.mark.parametrize("body,code", [
    ({"url": "ftp://example.com/x"}, "invalid_parameter_value"),
    ({"url": "https://user:pw@example.com/x"}, "invalid_parameter_value"),
    ({"url": "not a url"}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "event_types": []}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "event_types": ["orders.*.x"]}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "timeout_ms": 5}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "max_in_flight": 0}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "rate_limit": -1}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "headers": {"content-type": "x"}}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "headers": ["a"]}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "secret": "short"}, None),
    ({"url": "https://example.com/x\u0000"}, None),
    ({"url": "https://example.com/x", "colour": "red"}, "invalid_request"),
    ({"url": 5}, "invalid_request"),
    ({}, "invalid_request"),
    ({"url": "https://example.com/x", "max_in_flight": 99999999999}, "invalid_request"),
    ({"url": "https://example.com/x", "retry_schedule_ms": [-5]}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "retry_schedule_ms": [5]}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "retry_schedule_ms": [1000] * 101}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "retry_schedule_ms": [2**62]}, None),
    ({"url": "https://example.com/x", "retry_schedule_ms": "5s"}, "invalid_request"),
    ({"url": "https://example.com/x", "retry_max_age_ms": 0}, "invalid_parameter_value"),
    ({"url": "https://example.com/x", "retry_max_age_ms": 2**62}, None),
])
def test_bad_endpoints_are_refused_with_the_sql_api_s_reason(api, db, body, code):
    r = api.post("/api/v1/endpoints", json=body, headers=ADMIN)
    err = error_of(r, 400, code)
    if err["code"] != "invalid_request":
        assert err["sqlstate"].startswith("22"), err
    assert q1(db, "SELECT count(*) FROM webhook.endpoint") == 0


def test_malformed_requests_are_400_not_500(api):
    e = create(api, "https://example.com/x")["endpoint"]
    cases = [
        api.post("/api/v1/endpoints", content=b"{not json", headers=ADMIN),
        api.post("/api/v1/endpoints", content=b"\xff\xfe", headers=ADMIN),
        api.get("/api/v1/endpoints/abc", headers=ADMIN),
        api.get("/api/v1/endpoints/99999999999999999999", headers=ADMIN),
        api.patch(f"/api/v1/endpoints/{e['id']}", json={"timeout_ms": "slow"}, headers=ADMIN),
        api.patch(f"/api/v1/endpoints/{e['id']}", json={"max_in_flight": 0}, headers=ADMIN),
        api.post(f"/api/v1/endpoints/{e['id']}/replay", json={}, headers=ADMIN),
        api.post(f"/api/v1/endpoints/{e['id']}/replay", json={"since": "yesterday-ish"}, headers=ADMIN),
        api.post(f"/api/v1/endpoints/{e['id']}/rotate-secret", json={"overlap_seconds": -5}, headers=ADMIN),
        api.get("/api/v1/deliveries?status=lost", headers=ADMIN),
        api.get("/api/v1/deliveries?limit=0", headers=ADMIN),
        api.get("/api/v1/deliveries?limit=1000", headers=ADMIN),
        api.get("/api/v1/deliveries?cursor=nonsense", headers=ADMIN),
        api.get("/api/v1/deliveries?since=not-a-time", headers=ADMIN),
        api.get("/api/v1/deliveries?endpoint_id=x", headers=ADMIN),
        api.get("/api/v1/deliveries?event_type=%00", headers=ADMIN),
        api.get("/api/v1/deliveries?unknown=1", headers=ADMIN),
        api.get("/api/v1/events?cursor=1.2", headers=ADMIN),
        api.get("/api/v1/events?until=31 Febtober", headers=ADMIN),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert set(r.json()) >= {"code", "message", "hint"}, r.text
    error_of(api.get("/api/v1/nothing-here", headers=ADMIN), 404, "not_found")


def test_enable_disable_rotate_reveal_and_send_test(api, db, receiver, webhookd):
    r = receiver()
    e = create(api, r.url, secret=SECRET)["endpoint"]
    webhookd(*FAST)
    assert api.post(f"/api/v1/endpoints/{e['id']}/disable", headers=ADMIN).json()["enabled"] is False
    error_of(api.post(f"/api/v1/endpoints/{e['id']}/test", headers=ADMIN), 409, "object_not_in_prerequisite_state")
    assert api.post(f"/api/v1/endpoints/{e['id']}/enable", headers=ADMIN).json()["enabled"] is True

    sent = api.post(f"/api/v1/endpoints/{e['id']}/test", headers=ADMIN)
    assert sent.status_code == 202
    event_id = sent.json()["event_id"]
    wait_for(lambda: r.count() >= 1, 20, what="the test event")
    assert r.requests[0]["headers"]["webhook-id"] == str(event_id)

    new = api.post(f"/api/v1/endpoints/{e['id']}/rotate-secret", json={"overlap_seconds": 0}, headers=ADMIN).json()
    assert new["secret"].startswith("whsec_") and new["secret"] != SECRET
    assert api.post(f"/api/v1/endpoints/{e['id']}/reveal-secret", headers=ADMIN).json() == new
    assert q1(db, "SELECT webhook.endpoint_secret(%s)", e["id"]) == new["secret"]
    # An empty body takes the default overlap (the old secret keeps signing).
    assert api.post(f"/api/v1/endpoints/{e['id']}/rotate-secret", headers=ADMIN).status_code == 200


def test_the_health_of_an_endpoint_shows_attempts_and_failures(api, receiver, webhookd, db):
    good = receiver()
    bad = receiver(lambda n, req: (500, {}, b"nope", 0))
    g = create(api, good.url, event_types=["t.*"])["endpoint"]
    b = create(api, bad.url, event_types=["t.*"])["endpoint"]
    webhookd(*FAST)
    db.execute("SELECT webhook.emit('t.x', '{}') FROM generate_series(1, 3)")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == 6, 30,
             what="three succeeded, three dead")
    by_id = {e["id"]: e["health"] for e in api.get("/api/v1/endpoints", headers=READ).json()}
    assert by_id[g["id"]]["success_rate_last_hour"] == 1.0
    assert by_id[g["id"]]["last_status"] == 204 and by_id[g["id"]]["dead"] == 0
    assert by_id[b["id"]]["success_rate_last_hour"] == 0.0
    assert by_id[b["id"]]["dead"] == 3 and by_id[b["id"]]["failures_last_hour"] == 9
    assert sum(by_id[b["id"]]["activity"]["failures"]) == 9
    assert by_id[b["id"]]["last_failure_at"].endswith("Z")


def test_an_endpoint_s_retry_policy_is_set_read_and_reset(api, db):
    e = create(api, "https://example.com/x", retry_schedule_ms=[100, 90_000, 7_200_000],
               retry_max_age_ms=86_400_000)["endpoint"]
    assert e["retry_schedule_ms"] == [100, 90_000, 7_200_000] and e["retry_max_age_ms"] == 86_400_000
    assert q1(db, "SELECT retry_schedule::text FROM webhook.endpoint") == "{00:00:00.1,00:01:30,02:00:00}"
    path = f"/api/v1/endpoints/{e['id']}"
    # Absent fields keep their value; [] is "no retry"; null goes back to
    # webhookd's schedule and removes the age limit.
    r = api.patch(path, json={"retry_schedule_ms": []}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["retry_schedule_ms"] == [] and r.json()["retry_max_age_ms"] == 86_400_000
    r = api.patch(path, json={"retry_schedule_ms": None, "retry_max_age_ms": None}, headers=ADMIN)
    assert r.json()["retry_schedule_ms"] is None and r.json()["retry_max_age_ms"] is None
    error_of(api.patch(path, json={"retry_max_age_ms": -1}, headers=ADMIN), 400, "invalid_parameter_value")
    assert q1(db, "SELECT retry_max_age IS NULL FROM webhook.endpoint") is True


def test_the_failing_state_the_database_keeps_is_shown(api, db):
    e = create(api, "https://example.com/x")["endpoint"]
    assert e["health"]["failing_since"] is None
    db.execute("UPDATE webhook.endpoint SET failing_since = now() - interval '1 hour'")
    got = api.get(f"/api/v1/endpoints/{e['id']}", headers=READ).json()
    assert got["health"]["failing_since"].endswith("Z")


# Deliveries, events, repairs.

def test_deliveries_are_listed_filtered_paged_and_shown_with_their_attempts(api, db, receiver, webhookd):
    r = receiver(lambda n, req: (500, {}, b"not today", 0) if n < 2 else (204, {}, b"", 0))
    e = create(api, r.url, event_types=["orders.*"])["endpoint"]
    other = create(api, "https://example.invalid/never", event_types=["none.*"])["endpoint"]
    db.execute("SELECT webhook.emit('orders.insert', jsonb_build_object('n', g)) FROM generate_series(1, 7) g")
    webhookd(*FAST)
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 7, 30,
             what="7 deliveries")
    page = api.get("/api/v1/deliveries", params={"limit": 3}, headers=READ).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    seen = [d["event_id"] for d in page["items"]]
    while page["next_cursor"]:
        page = api.get("/api/v1/deliveries", params={"limit": 3, "cursor": page["next_cursor"]}, headers=READ).json()
        seen += [d["event_id"] for d in page["items"]]
    assert seen == sorted(seen, reverse=True) and len(seen) == 7
    assert api.get("/api/v1/deliveries", params={"endpoint_id": other["id"]}, headers=READ).json()["items"] == []
    assert len(api.get("/api/v1/deliveries", params={"status": "succeeded", "event_type": "orders.insert"},
                       headers=READ).json()["items"]) == 7
    assert api.get("/api/v1/deliveries", params={"since": "2999-01-01T00:00:00Z"}, headers=READ).json()["items"] == []
    assert len(api.get("/api/v1/deliveries", params={"until": "2999-01-01"}, headers=READ).json()["items"]) == 7

    # The receiver failed the first two requests: those events were retried.
    retried = q1(db, "SELECT min(event_id) FROM webhook.deliveries WHERE attempts > 1")
    d = api.get(f"/api/v1/deliveries/{retried}/{e['id']}", headers=ADMIN).json()
    assert d["delivery"]["status"] == "succeeded"
    assert d["event"]["payload"]["type"] == "orders.insert"
    statuses = [a["http_status"] for a in d["attempts"]]
    assert statuses[0] == 500 and statuses[-1] == 204, statuses
    assert d["attempts"][0]["response_excerpt"] == "not today"
    first = seen[-1]
    d = api.get(f"/api/v1/deliveries/{first}/{e['id']}", headers=ADMIN).json()
    assert d["event"]["payload"]["data"] == {"n": 1}
    names = [h["name"] for h in d["request"]["headers"]]
    assert names[:3] == ["content-type", "user-agent", "webhook-id"]
    assert d["request"]["headers"][2]["value"] == str(first)
    error_of(api.get(f"/api/v1/deliveries/{first}/{other['id']}", headers=ADMIN), 404, "not_found")

    # Redeliver one, then the event to every endpoint.
    assert api.post(f"/api/v1/deliveries/{first}/{e['id']}/redeliver", headers=ADMIN).json() == {"requeued": 1}
    wait_for(lambda: q1(db, "SELECT attempts FROM webhook.deliveries WHERE event_id = %s", first) == 1, 20,
             what="the redelivery")
    assert api.post(f"/api/v1/events/{first}/redeliver", headers=ADMIN).json() == {"requeued": 1}
    error_of(api.post("/api/v1/events/999999/redeliver", headers=ADMIN), 404, "no_data_found")


def test_dead_deliveries_are_replayed_since_a_time(api, db, receiver, webhookd):
    failing = {"on": True}
    r = receiver(lambda n, req: (503, {}, b"", 0) if failing["on"] else (204, {}, b"", 0))
    e = create(api, r.url)["endpoint"]
    webhookd(*FAST)
    db.execute("SELECT webhook.emit('a.b', '{}') FROM generate_series(1, 4)")
    wait_for(lambda: api.get(f"/api/v1/endpoints/{e['id']}", headers=READ).json()["health"]["dead"] == 4, 30,
             what="4 dead deliveries")
    dead = api.get("/api/v1/deliveries", params={"status": "dead"}, headers=READ).json()["items"]
    assert len(dead) == 4 and all(d["last_http_status"] == 503 for d in dead)
    failing["on"] = False
    assert api.post(f"/api/v1/endpoints/{e['id']}/replay", json={"since": "2999-01-01T00:00:00Z"},
                    headers=ADMIN).json() == {"requeued": 0}
    assert api.post(f"/api/v1/endpoints/{e['id']}/replay", json={"since": "-infinity"},
                    headers=ADMIN).json() == {"requeued": 4}
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 4, 30,
             what="the replayed deliveries")


def test_events_are_listed_shown_and_their_types_offered(api, db):
    db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
    db.execute("SELECT webhook.track('orders', '{insert,update}')")
    db.execute("INSERT INTO orders (total) VALUES (5), (7)")
    db.execute("SELECT webhook.emit('loyalty.points', '{\"points\": 3}')")
    types = {t["event_type"]: t for t in api.get("/api/v1/event-types", headers=READ).json()}
    assert types["orders.insert"]["tracked"] and types["orders.insert"]["last_seen_at"]
    assert types["orders.update"]["tracked"] and types["orders.update"]["last_seen_at"] is None
    assert not types["loyalty.points"]["tracked"] and types["loyalty.points"]["last_seen_at"]

    page = api.get("/api/v1/events", params={"limit": 2}, headers=READ).json()
    assert [e["event_type"] for e in page["items"]] == ["loyalty.points", "orders.insert"]
    rest = api.get("/api/v1/events", params={"cursor": page["next_cursor"]}, headers=READ).json()
    assert [e["event_type"] for e in rest["items"]] == ["orders.insert"] and rest["next_cursor"] is None
    only = api.get("/api/v1/events", params={"event_type": "loyalty.points"}, headers=READ).json()["items"]
    ev = api.get(f"/api/v1/events/{only[0]['id']}", headers=READ).json()
    assert ev["event"]["payload"]["data"] == {"points": 3}
    assert ev["deliveries"] == []
    error_of(api.get("/api/v1/events/424242", headers=READ), 404, "not_found")


def test_the_console_replaces_connections_the_database_closed(api, db):
    assert api.get("/api/v1/endpoints", headers=READ).status_code == 200
    # As a server restart or an idle timeout would: every console
    # connection is closed under it; the next request gets a new one.
    killed = q1(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'webhookd console'")
    assert killed >= 1
    r = api.get("/api/v1/endpoints", headers=READ)
    assert r.status_code == 200, r.text
    assert api.get("/healthz").json()["status"] == "ok"


# Endpoint URLs for the read role, and the console's log.

def signed_in(console, token):
    """A client signed in to the web console with `token` (its cookie)."""
    c = httpx.Client(base_url=console.url, timeout=10)
    form = re.search(r'name="login_csrf" value="([^"]+)"', c.get("/login").text)
    assert form, "no sign-in form"
    r = c.post("/login", data={"token": token, "next": "/", "login_csrf": form.group(1)},
               headers={"Origin": console.url})
    assert r.status_code in (302, 303), (r.status_code, r.text[:500])
    return c


def test_the_read_role_sees_endpoint_urls_without_query_or_userinfo_and_the_log_only_origins(
    api, console, db, receiver, webhookd
):
    r = receiver()
    # (The SQL API refuses userinfo in a URL; the redaction would hide it too.)
    secrets = ["url-credential-123", "sig=s3cr3t"]
    url = f"http://127.0.0.1:{r.port}/hook?token=url-credential-123&sig=s3cr3t"
    shown = f"http://127.0.0.1:{r.port}/hook?[redacted]"
    eid = create(api, url)["endpoint"]["id"]
    event_id = q1(db, "SELECT webhook.emit('t.x', '{}')")
    webhookd(*FAST)
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.attempts") >= 1, 20, what="an attempt")
    delivery = f"/deliveries/{event_id}/{eid}"

    # The API: the read token gets origin and path, the admin token all.
    for path, get in [("/api/v1/endpoints", lambda j: j[0]["url"]), (f"/api/v1/endpoints/{eid}", lambda j: j["url"]),
                      (f"/api/v1{delivery}", lambda j: j["request"]["url"])]:
        read = api.get(path, headers=READ)
        assert read.status_code == 200, read.text
        assert get(read.json()) == shown, (path, read.text)
        assert not any(s in read.text for s in secrets), (path, read.text)
        assert get(api.get(path, headers=ADMIN).json()) == url, path

    # The pages, signed in with the read token.
    browser = signed_in(console, READ_TOKEN)
    try:
        for path in ["/", f"/endpoints/{eid}", "/deliveries", delivery, f"/events/{event_id}"]:
            page = browser.get(path)
            assert page.status_code == 200, (path, page.status_code)
            assert not any(s in page.text for s in secrets), (path, [s for s in secrets if s in page.text])
            if path != f"/events/{event_id}":
                assert f"127.0.0.1:{r.port}/hook?[redacted]" in page.text, path
    finally:
        browser.close()
    browser = signed_in(console, ADMIN_TOKEN)
    try:
        assert "url-credential-123" in browser.get(f"/endpoints/{eid}").text
    finally:
        browser.close()

    # The console's log: the origin only.
    log = console.output()
    created = [line for line in log.splitlines() if "endpoint created" in line]
    assert created and f"http://127.0.0.1:{r.port}" in created[0], log[-2000:]
    assert not any(s in log for s in secrets + ["/hook"]), log[-2000:]


# The console's HTTP server against slow and idle clients.

def test_half_sent_requests_are_closed_and_idle_connections_do_not_hold_the_console(dbname):
    from support.console import Console

    c = Console(dbname, env={
        "WEBHOOKD_CONSOLE_HEADER_TIMEOUT": "2s",
        "WEBHOOKD_CONSOLE_REQUEST_TIMEOUT": "1s",
        "WEBHOOKD_CONSOLE_MAX_CONNECTIONS": "12",
    })
    opened = []

    def connect():
        s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
        opened.append(s)
        return s

    def closed_within(s, seconds):
        """Whether the console closes `s` within `seconds` (whatever it
        answers first), and after how long."""
        s.settimeout(seconds)
        start = time.monotonic()
        try:
            while s.recv(4096):
                pass
            return True, time.monotonic() - start
        except (TimeoutError, socket.timeout):
            return False, seconds
        except ConnectionResetError:
            return True, time.monotonic() - start

    try:
        # Half a request head: closed after the header timeout.
        half = connect()
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed, after = closed_within(half, 8)
        assert closed and 1.5 < after < 5, after
        # A head, then half of its body: 408 after the request timeout.
        slow = connect()
        slow.sendall(f"POST /api/v1/endpoints HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"url\": ".encode())
        slow.settimeout(6)
        assert slow.recv(4096).startswith(b"HTTP/1.1 408"), "no 408"
        slow.close()
        # Idle connections below the limit: a request is answered at once.
        idle = [connect() for _ in range(8)]
        start = time.monotonic()
        assert httpx.get(f"{c.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - start < 0.5
        # At the limit (the closed ones given back), one more is closed as
        # soon as it is accepted...
        time.sleep(0.3)
        idle += [connect() for _ in range(4)]
        time.sleep(0.1)
        for extra in range(2):
            closed, after = closed_within(connect(), 0.3)
            assert closed, (f"connection {13 + extra} stayed open", c.output()[-3000:])
        assert not any(closed_within(s, 0.01)[0] for s in idle), "an idle connection below the limit was closed early"
        # ...and once the idle ones are timed out, requests are answered.
        time.sleep(2.2)
        assert httpx.get(f"{c.url}/healthz", timeout=5).status_code == 200
        assert "connection refused, as many as --max-connections are open" in c.output()
    finally:
        for s in opened:
            s.close()
        c.stop()
