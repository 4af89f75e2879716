"""`webhookd console`'s defences, each against a real console and database:
server-side sessions (a cookie is no token; signing out and restarting end
it; CSRF tokens per session), the sign-in redirect (console paths only),
login CSRF, the backoff of wrong tokens and the refusal of weak ones,
named tokens and the audit trail (who, from where, which request), generic
5xx answers with a request id, Host checks (DNS rebinding) and the cookies
under --secure-cookie."""

import re
import secrets
import subprocess

import httpx
import pytest

from support.cluster import ROOT, dsn, free_port, q, q1, wait_for
from support.webhookd import WEBHOOKD
from support.console import ADMIN_TOKEN, Console, READ_TOKEN

pytestmark = pytest.mark.version_independent

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def client(console, source="127.0.0.1", **kw):
    """A client of the console from a loopback address of its own."""
    return httpx.Client(base_url=console.url, timeout=10,
                        transport=httpx.HTTPTransport(local_address=source), **kw)


def login_form(c, next_path=None):
    r = c.get("/login", params={"next": next_path} if next_path else None)
    assert r.status_code == 200, r.text
    m = re.search(r'name="login_csrf" value="([^"]+)"', r.text)
    return m.group(1) if m else ""


def sign_in(c, token=ADMIN_TOKEN, next_path=None, headers=None):
    """The sign-in form as a browser posts it: the form's page first (its
    cookie), then the form."""
    form = {"token": token, "login_csrf": login_form(c, next_path)}
    if next_path is not None:
        form["next"] = next_path
    return c.post("/login", data=form, headers=headers)


def csrf_of(page):
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def audit_lines(console, request_id):
    return [line for line in console.output().splitlines() if f"request_id={request_id}" in line]


# Finding 5: sessions of their own.

def test_a_session_cookie_is_no_token_and_signing_out_ends_it(console):
    with client(console) as c:
        r = sign_in(c)
        assert r.status_code == 303, r.text
        session = c.cookies["pgwh_console"]
        assert ADMIN_TOKEN not in session and len(session) >= 43
        assert c.get("/").status_code == 200
        # The cookie is not a bearer token ...
        r = c.get("/api/v1/endpoints", headers={"Authorization": f"Bearer {session}"})
        assert r.status_code == 401
        # ... and a token is not a session.
        with client(console, cookies={"pgwh_console": ADMIN_TOKEN}) as other:
            r = other.get("/")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
        page = c.get("/").text
        # A copy of the cookie, taken before signing out.
        with client(console, cookies={"pgwh_console": session}) as copy:
            assert copy.get("/").status_code == 200
            r = c.post("/logout", data={"csrf": csrf_of(page)})
            assert r.status_code == 303 and r.headers["location"] == "/login"
            # Ended on the server: the copy is worth nothing now.
            r = copy.get("/")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_each_session_has_its_own_csrf_token(console, db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x')")
    with client(console) as a, client(console) as b:
        assert sign_in(a).status_code == 303 and sign_in(b).status_code == 303
        csrf_a = csrf_of(a.get(f"/endpoints/{eid}").text)
        csrf_b = csrf_of(b.get(f"/endpoints/{eid}").text)
        # Same token, two sessions: their CSRF tokens differ, and one's is
        # refused in the other.
        assert csrf_a != csrf_b
        assert b.post(f"/endpoints/{eid}/disable", data={"csrf": csrf_a}).status_code == 403
        assert q1(db, "SELECT enabled FROM webhook.endpoint") is True
        assert b.post(f"/endpoints/{eid}/disable", data={"csrf": csrf_b}).status_code == 303
        assert q1(db, "SELECT enabled FROM webhook.endpoint") is False


def test_a_restart_with_other_tokens_ends_the_sessions(dbname, tmp_path):
    old = Console(dbname)
    try:
        with client(old) as c:
            assert sign_in(c).status_code == 303
            session = c.cookies["pgwh_console"]
            assert c.get("/").status_code == 200
    finally:
        old.stop()
    # The admin token rotated: a token file with a new one, none in the
    # environment.
    tokens = tmp_path / "tokens"
    new_token = secrets.token_hex(32)
    tokens.write_text(f"ops admin {new_token}\n")
    tokens.chmod(0o600)
    new = Console(dbname, env={"WEBHOOKD_CONSOLE_ADMIN_TOKEN": None, "WEBHOOKD_CONSOLE_READ_TOKEN": None,
                               "WEBHOOKD_CONSOLE_TOKEN_FILE": str(tokens)})
    try:
        with client(new, cookies={"pgwh_console": session}) as c:
            r = c.get("/")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
            assert c.get("/api/v1/endpoints", headers=ADMIN).status_code == 401
            assert c.get("/api/v1/endpoints", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    finally:
        new.stop()


# Finding 6: where the sign-in goes.

@pytest.mark.parametrize("next_path", [
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\x0b/evil.example", "//evil.example",
    "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "/%09/evil.example", "/%2F%2Fevil.example",
    "/%5Cevil.example", "%2F%2Fevil.example", "https://evil.example/", "/ /evil.example",
])
def test_sign_in_never_redirects_off_the_console(console, next_path):
    with client(console) as c:
        page = c.get("/login", params={"next": next_path})
        assert page.status_code == 200
        assert 'name="next" value="/"' in page.text
        r = sign_in(c, next_path=next_path)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/"


def test_sign_in_returns_to_the_console_page_asked_for(console):
    with client(console) as c:
        r = c.get("/deliveries", params={"status": "dead", "endpoint_id": "3"})
        assert r.status_code == 303
        asked = httpx.URL(r.headers["location"]).params["next"]
        assert asked == "/deliveries?status=dead&endpoint_id=3"
        r = sign_in(c, next_path=asked)
        assert r.headers["location"] == asked


# Finding 7: login CSRF.

def test_a_sign_in_from_another_site_is_refused(console):
    with client(console) as c:
        for headers in [{"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}]:
            r = sign_in(c, headers=headers)
            assert r.status_code == 403, (headers, r.status_code)
            assert "pgwh_console" not in r.cookies
        # A form without its cookie (another site's own form), or with
        # another form's token.
        with client(console) as fresh:
            r = fresh.post("/login", data={"token": ADMIN_TOKEN, "login_csrf": login_form(c)})
            assert r.status_code == 403 and "pgwh_console" not in r.cookies
            r = fresh.post("/login", data={"token": ADMIN_TOKEN})
            assert r.status_code == 403 and "pgwh_console" not in r.cookies
        login_form(c)
        r = c.post("/login", data={"token": ADMIN_TOKEN, "login_csrf": "forged"})
        assert r.status_code == 403
        # The console's own form, from its own origin.
        r = sign_in(c, headers={"Origin": console.url, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 303 and "pgwh_console" in r.cookies


# Finding 12: wrong tokens back off; weak tokens are refused.

def test_wrong_tokens_are_throttled_per_address(console):
    with client(console, "127.0.0.3") as signed_in:
        assert sign_in(signed_in).status_code == 303
    with client(console, "127.0.0.3") as guesser:
        def guess(i):
            return guesser.get("/api/v1/endpoints", headers={"Authorization": f"Bearer guess-{i}"}).status_code

        codes = [guess(i) for i in range(300)]
        # Five are free, the sixth starts a block of 1 s, doubled after
        # each further one (whichever comes after the block).
        assert codes[:6] == [401] * 6 and codes[6] == 429, codes
        assert set(codes) == {401, 429} and codes.count(401) <= 9, codes
        guess(300)
        r = guesser.get("/api/v1/endpoints", headers={"Authorization": "Bearer guess-301"})
        # Blocked: wrong tokens wait, without a line each.
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["code"] == "too_many_requests"
        r = sign_in(guesser, token="guess-302")
        assert r.status_code == 429 and "retry-after" in r.headers and "pgwh_console" not in r.cookies
        # A right token still passes: a guesser behind the same address (a
        # proxy, NAT) locks nobody out.
        assert guesser.get("/api/v1/endpoints", headers=ADMIN).status_code == 200
        assert sign_in(guesser).status_code == 303
        # The session signed in from there before keeps working.
        session = signed_in.cookies["pgwh_console"]
        assert guesser.get("/", headers={"Cookie": f"pgwh_console={session}"}).status_code == 200
    # Other addresses are not affected.
    with client(console, "127.0.0.4") as other:
        assert other.get("/api/v1/endpoints", headers=ADMIN).status_code == 200
        assert sign_in(other).status_code == 303
    out = console.output()
    assert out.count("console: wrong token") < 20, "a blocked address's requests are not logged one by one"
    assert "too many wrong tokens from this address" in out


@pytest.mark.parametrize("token", [
    "shop-demo-admin-token", "a" * 100, "0123456789" * 6, "abc" * 30, "correct-horse", secrets.token_hex(8),
])
def test_weak_tokens_are_refused_at_start(dbname, token):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": dsn(dbname), "WEBHOOKD_CONSOLE_ADMIN_TOKEN": token}
    out = subprocess.run([str(WEBHOOKD), "console", "--addr", f"127.0.0.1:{free_port()}"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "WEBHOOKD_CONSOLE_ADMIN_TOKEN: the token is too weak" in text, text
    assert "openssl rand -hex 32" in text
    assert token not in text


def test_the_compose_demo_has_no_fixed_console_tokens():
    compose = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"CONSOLE_(ADMIN|READ)_TOKEN:-[^}]", compose), "a default token in compose.yaml"
    for f in (ROOT / "deploy").rglob("*"):
        if f.is_file():
            assert "demo-admin-token" not in f.read_text(errors="replace"), f
    # They are made at the first start, 32 random bytes each.
    script = (ROOT / "deploy" / "compose" / "console-tokens.sh").read_text()
    assert "/dev/urandom" in script
    assert "WEBHOOKD_CONSOLE_TOKEN_FILE" in compose


# Finding 13: named tokens and the audit trail.

def test_every_action_is_audited_with_token_name_client_and_request_id(dbname, db, tmp_path):
    alice, bob = secrets.token_hex(32), secrets.token_hex(32)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# the on-call team\nalice admin {alice}\nbob read {bob}\n")
    tokens.chmod(0o600)
    console = Console(dbname, env={"WEBHOOKD_CONSOLE_TOKEN_FILE": str(tokens)})
    try:
        with client(console, "127.0.0.5") as c:
            h = {"Authorization": f"Bearer {alice}"}

            def audited(r, action):
                rid = r.headers["x-request-id"]
                lines = [line for line in audit_lines(console, rid) if action in line]
                assert lines, (action, rid, console.output()[-3000:])
                assert all("token=alice" in line and "client=127.0.0.5" in line for line in lines), lines
                return r

            e = audited(c.post("/api/v1/endpoints", json={"url": "https://example.com/a"}, headers=h),
                        "endpoint.create").json()["endpoint"]
            eid = e["id"]
            path = f"/api/v1/endpoints/{eid}"
            audited(c.patch(path, json={"description": "x"}, headers=h), "endpoint.update")
            sent = audited(c.post(f"{path}/test", headers=h), "endpoint.test")
            event_id = sent.json()["event_id"]
            assert str(event_id) in "".join(audit_lines(console, sent.headers["x-request-id"]))
            audited(c.post(f"{path}/disable", headers=h), "endpoint.disable")
            audited(c.post(f"{path}/enable", headers=h), "endpoint.enable")
            audited(c.post(f"{path}/rotate-secret", headers=h), "endpoint.rotate-secret")
            audited(c.post(f"{path}/reveal-secret", headers=h), "endpoint.reveal-secret")
            audited(c.post(f"{path}/replay", json={"since": "-infinity"}, headers=h), "endpoint.replay")
            audited(c.post(f"/api/v1/deliveries/{event_id}/{eid}/redeliver", headers=h), "delivery.redeliver")
            audited(c.post(f"/api/v1/events/{event_id}/redeliver", headers=h), "event.redeliver")
            # A refusal is audited too, with the SQL API's SQLSTATE.
            r = audited(c.post("/api/v1/endpoints/424242/test", headers=h), "endpoint.test")
            assert "refused" in "".join(audit_lines(console, r.headers["x-request-id"]))
            # The read-only token is bob; it may read.
            assert c.get(path, headers={"Authorization": f"Bearer {bob}"}).status_code == 200

            # The pages: sign in, send a test, sign out, through the same layer.
            audited(sign_in(c, alice), "session.start")
            page = c.get(f"/endpoints/{eid}").text
            audited(c.post(f"/endpoints/{eid}/test", data={"csrf": csrf_of(page)}), "endpoint.test")
            audited(c.post("/logout", data={"csrf": csrf_of(page)}), "session.end")
            audited(c.delete(path, headers=h), "endpoint.delete")

            # A wrong token: its address and request id, never the token.
            wrong = "wrong-" + secrets.token_hex(8)
            r = c.get("/api/v1/endpoints", headers={"Authorization": f"Bearer {wrong}"})
            assert r.status_code == 401
            lines = audit_lines(console, r.headers["x-request-id"])
            assert any("wrong token" in line and "client=127.0.0.5" in line for line in lines), lines
            assert wrong not in console.output()
            assert alice not in console.output() and bob not in console.output()
        assert q1(db, "SELECT count(*) FROM webhook.endpoint") == 0
    finally:
        console.stop()


def audit_line(console, response, action):
    """The one audit line of `action` that `response`'s request wrote, as
    it would read for any endpoint and event: ids, request id and time
    left out."""
    rid = response.headers["x-request-id"]
    lines = [line for line in audit_lines(console, rid) if f'action="{action}"' in line]
    assert len(lines) == 1, (action, lines, console.output()[-3000:])
    line = lines[0].split(" console::audit: ", 1)[1]
    line = re.sub(r"request_id=\S+", "request_id=…", line)
    return re.sub(r"(endpoint_id|event_id)=\d+", r"\1=…", line)


def test_an_action_writes_the_same_audit_line_from_the_api_and_the_pages(console, db):
    """The one action layer: each action done once through the API and once
    through the pages, on two endpoints alike, logs the same line."""
    url = "https://example.com/hooks?key=receiver-credential"
    with client(console) as c:
        assert sign_in(c).status_code == 303
        csrf = csrf_of(c.get("/endpoints/new").text)
        form = {"csrf": csrf, "url": url, "event_types": "*", "description": "", "headers": "",
                "timeout_ms": "", "max_in_flight": "", "rate_limit": ""}
        by_page = c.post("/endpoints", data=form)
        assert by_page.status_code == 200, by_page.text
        by_api = c.post("/api/v1/endpoints", json={"url": url, "event_types": ["*"]}, headers=ADMIN)
        assert by_api.status_code == 201, by_api.text
        secrets_shown = [by_api.json()["secret"]]
        assert audit_line(console, by_api, "endpoint.create") == audit_line(console, by_page, "endpoint.create")
        # Neither front end logs the URL's query: the receiver's credential.
        assert "receiver-credential" not in console.output()
        api_id = by_api.json()["endpoint"]["id"]
        page_id = int(re.search(r'href="/endpoints/(\d+)"', by_page.text).group(1))
        assert page_id != api_id
        api = f"/api/v1/endpoints/{api_id}"
        page = f"/endpoints/{page_id}"

        def same(action, through_api, through_page):
            a, p = through_api(), through_page()
            assert a.status_code < 400 and p.status_code < 400, (action, a.text, p.text)
            assert audit_line(console, a, action) == audit_line(console, p, action)
            return a, p

        same("endpoint.update", lambda: c.patch(api, json={"description": "x"}, headers=ADMIN),
             lambda: c.post(f"{page}/edit", data={**form, "description": "x"}))
        (sent, _) = same("endpoint.test", lambda: c.post(f"{api}/test", headers=ADMIN),
                         lambda: c.post(f"{page}/test", data={"csrf": csrf}))
        event_id = sent.json()["event_id"]
        # The pages' test event, sent after the API's.
        page_event = q1(db, "SELECT max(id) FROM webhook.events")
        assert page_event > event_id
        for action in ("disable", "enable"):
            same(f"endpoint.{action}", lambda: c.post(f"{api}/{action}", headers=ADMIN),
                 lambda: c.post(f"{page}/{action}", data={"csrf": csrf}))
        (rotated, _) = same("endpoint.rotate-secret", lambda: c.post(f"{api}/rotate-secret", headers=ADMIN),
                            lambda: c.post(f"{page}/rotate-secret", data={"csrf": csrf}))
        (revealed, _) = same("endpoint.reveal-secret", lambda: c.post(f"{api}/reveal-secret", headers=ADMIN),
                             lambda: c.post(f"{page}/reveal-secret", data={"csrf": csrf}))
        secrets_shown += [rotated.json()["secret"], revealed.json()["secret"]]
        same("endpoint.replay", lambda: c.post(f"{api}/replay", json={"since": "-infinity"}, headers=ADMIN),
             lambda: c.post(f"{page}/replay", data={"csrf": csrf, "window": "all"}))
        same("delivery.redeliver",
             lambda: c.post(f"/api/v1/deliveries/{event_id}/{api_id}/redeliver", headers=ADMIN),
             lambda: c.post(f"/deliveries/{page_event}/{page_id}/redeliver", data={"csrf": csrf}))
        same("endpoint.delete", lambda: c.delete(api, headers=ADMIN),
             lambda: c.post(f"{page}/delete", data={"csrf": csrf}))
    for secret in secrets_shown:
        assert secret not in console.output()


def test_both_token_sources_are_named_and_clashes_refused(dbname, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin admin {secrets.token_hex(32)}\n")
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": dsn(dbname), "WEBHOOKD_CONSOLE_ADMIN_TOKEN": ADMIN_TOKEN,
           "WEBHOOKD_CONSOLE_TOKEN_FILE": str(tokens)}
    out = subprocess.run([str(WEBHOOKD), "console", "--addr", f"127.0.0.1:{free_port()}"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and 'the name "admin" is taken' in out.stdout + out.stderr
    tokens.write_text(f"alice owner {secrets.token_hex(32)}\n")
    out = subprocess.run([str(WEBHOOKD), "console", "--addr", f"127.0.0.1:{free_port()}"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and f"{tokens}:1: expected `name role token`" in out.stdout + out.stderr


# Finding 16: 5xx answers, Host names, cookies under --secure-cookie.

def test_server_errors_tell_a_request_id_not_the_database_s_words(console, db):
    with client(console) as c:
        assert sign_in(c).status_code == 303
        db.execute("ALTER VIEW webhook.deliveries RENAME TO deliveries_gone")
        try:
            r = c.get("/api/v1/deliveries", headers=ADMIN)
            assert r.status_code == 500, r.text
            body = r.json()
            rid = r.headers["x-request-id"]
            assert body["request_id"] == rid and rid in body["hint"]
            assert body["message"] == "internal error" and body["sqlstate"] is None
            assert "deliveries" not in r.text and "relation" not in r.text
            # The detail is in the log, under the request id.
            assert any("relation" in line and "webhook.deliveries" in line for line in audit_lines(console, rid))
            page = c.get("/deliveries")
            assert page.status_code == 500
            assert "relation" not in page.text and page.headers["x-request-id"] in page.text
        finally:
            db.execute("ALTER VIEW webhook.deliveries_gone RENAME TO deliveries")
        r = c.get("/api/v1/deliveries", headers=ADMIN)
        assert r.status_code == 200 and len(r.headers["x-request-id"]) == 24


def test_requests_for_foreign_host_names_are_refused(dbname):
    console = Console(dbname, env={"WEBHOOKD_CONSOLE_ALLOWED_HOSTS": "console.example.com,ops.example.com"})
    try:
        with client(console) as c:
            for path in ["/healthz", "/api/v1/openapi.json", "/login", "/api/v1/endpoints"]:
                for host in ["evil.example", f"evil.example:{console.port}", "127.0.0.1.evil.example"]:
                    r = c.get(path, headers={"Host": host, **ADMIN})
                    assert r.status_code == 421, (path, host, r.status_code)
                    assert "x-request-id" in r.headers and r.headers["x-frame-options"] == "DENY"
            for host in [f"127.0.0.1:{console.port}", f"localhost:{console.port}", "LOCALHOST",
                         "console.example.com", "ops.example.com:443"]:
                assert c.get("/healthz", headers={"Host": host}).status_code == 200, host
    finally:
        console.stop()


def test_under_secure_cookie_every_cookie_is_secure_and_host_prefixed(dbname, db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x')")
    console = Console(dbname, env={"WEBHOOKD_CONSOLE_SECURE_COOKIE": "true"})
    try:
        # Secure cookies are not sent back over http by a client: by hand.
        with client(console) as c:
            def set_cookies(r):
                return {v.split("=", 1)[0]: v for v in r.headers.get_list("set-cookie")}

            page = c.get("/login")
            login = set_cookies(page)["__Host-pgwh_login"]
            token = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
            r = c.post("/login", data={"token": ADMIN_TOKEN, "login_csrf": token},
                       headers={"Cookie": login.split(";")[0]})
            assert r.status_code == 303, r.text
            session = set_cookies(r)["__Host-pgwh_console"]
            flash = None
            cookie = {"Cookie": session.split(";")[0]}
            csrf = csrf_of(c.get(f"/endpoints/{eid}", headers=cookie).text)
            r = c.post(f"/endpoints/{eid}/disable", data={"csrf": csrf}, headers=cookie)
            assert r.status_code == 303
            flash = set_cookies(r)["__Host-pgwh_flash"]
            for value in [login, session, flash]:
                attrs = [a.strip().lower() for a in value.split(";")[1:]]
                assert "secure" in attrs and "path=/" in attrs and "httponly" in attrs, value
                assert not any(a.startswith("domain") for a in attrs), value
            assert not any(k.startswith("pgwh_") for k in set_cookies(r))
    finally:
        console.stop()


# Found in review: operational events name endpoint URLs; the replay form's window.

def test_the_read_role_sees_operational_events_without_url_queries(console, db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/hook?token=s3cret-in-query')")
    db.execute("SELECT webhook.disable_endpoint(%s)", (eid,))
    ev = q1(db, "SELECT id FROM webhook.events WHERE event_type = 'webhook.endpoint.disabled'")
    with client(console) as c:
        read = c.get(f"/api/v1/events/{ev}", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert read.status_code == 200 and "s3cret-in-query" not in read.text, read.text
        assert read.json()["event"]["payload"]["data"]["url"].startswith("https://example.com/hook")
        admin = c.get(f"/api/v1/events/{ev}", headers=ADMIN)
        assert "s3cret-in-query" in admin.text
    with client(console) as c:
        assert sign_in(c, token=READ_TOKEN).status_code == 303
        page = c.get(f"/events/{ev}")
        assert page.status_code == 200 and "s3cret-in-query" not in page.text


def test_a_replay_window_the_form_does_not_offer_is_refused_not_widened(console, db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', '{a.*}')")
    db.execute("SELECT webhook.emit('a.x', '{}')")
    (did, token) = q(db, "SELECT delivery_id, claim_token FROM webhook.claim(10, '1 minute', 'w')")[0]
    db.execute("SELECT webhook.record(%s, %s, '{500}', '{NULL}', '{1}', '{NULL}', '{NULL}', 'w')", ([did], [token]))
    with client(console) as c:
        assert sign_in(c).status_code == 303
        csrf = csrf_of(c.get(f"/endpoints/{eid}").text)
        for window in ["1h", "99999999999", "18446744073709551615", "-1"]:
            r = c.post(f"/endpoints/{eid}/replay", data={"csrf": csrf, "window": window})
            assert r.status_code < 500, (window, r.status_code)
            assert q1(db, "SELECT status FROM webhook.delivery WHERE id = %s", did) == "dead", window
        r = c.post(f"/endpoints/{eid}/replay", data={"csrf": csrf, "window": "all"})
        assert r.status_code == 303
    assert q1(db, "SELECT status FROM webhook.delivery WHERE id = %s", did) == "pending"
