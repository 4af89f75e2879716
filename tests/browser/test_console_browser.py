"""The web console in a real browser: Playwright driving Debian's Chromium
(headless, /usr/bin/chromium, no browser download) against a real console,
database, webhookd and receivers. Screenshots of the main pages are saved
under target/test-artifacts/console/."""

import os
import re
import shutil
import time

import httpx
import pytest

from support.cluster import ROOT, q1, wait_for
from support.console import ADMIN_TOKEN, READ_TOKEN

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "target" / "test-artifacts" / "console"
FAST = ["--retry-schedule", "200ms,200ms", "--retry-jitter", "0", "--poll-interval", "100ms",
        "--breaker-threshold", "1000"]

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and os.environ.get("CI") != "true",
        reason="no /usr/bin/chromium (scripts/setup.sh installs Debian's chromium); required under CI=true",
    ),
    pytest.mark.version_independent,
]


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(chromium, console):
    # A zone other than UTC: times must show in the viewer's zone.
    ctx = chromium.new_context(base_url=console.url, timezone_id="Asia/Tokyo", locale="en-GB",
                               viewport={"width": 1360, "height": 900})
    # Confirmation dialogs are accepted, as a user clicking OK would.
    ctx.on("page", lambda p: p.on("dialog", lambda d: d.accept()))
    p = ctx.new_page()
    p.on("dialog", lambda d: d.accept())
    yield p
    ctx.close()


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, token=ADMIN_TOKEN):
    page.goto("/")
    assert "/login" in page.url
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/$"))


def reload_until(page, predicate, timeout=30, what="the page to show it"):
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
        page.reload()


def test_sign_in_create_an_endpoint_and_see_a_test_event_arrive(page, console, db, receiver, webhookd):
    r = receiver()
    page.goto("/")
    assert "/login" in page.url
    shot(page, "sign-in")
    # A wrong token is refused, on the page.
    page.fill("#token", "not-the-token-0123456789")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text(".error")
    # Keyboard only: the field has focus; Enter signs in.
    page.fill("#token", ADMIN_TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "pgwh_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The cookie holds a session's own id, never the token.
    assert ADMIN_TOKEN not in cookie["value"]
    assert "No endpoints yet" in page.inner_text("main")

    page.click("text=New endpoint")
    page.fill("#url", r.url)
    page.fill("#event_types", "webhook.*, orders.*")
    page.fill("#description", "Warehouse")
    page.fill("#max_in_flight", "4")
    page.click("button:has-text('Create endpoint')")
    secret = page.inner_text("#secret-value")
    assert secret.startswith("whsec_")
    eid = q1(db, "SELECT id FROM webhook.endpoint")
    assert q1(db, "SELECT webhook.endpoint_secret(%s)", eid) == secret
    assert q1(db, "SELECT max_in_flight FROM webhook.endpoint") == 4
    page.click("text=Go to the endpoint")
    page.wait_for_url(re.compile(rf"/endpoints/{eid}$"))

    webhookd(*FAST)
    page.click("button:has-text('Send test event')")
    assert "Test event" in page.inner_text(".flash")
    wait_for(lambda: r.count() >= 1, 20, what="the test event at the receiver")
    reload_until(page, lambda: page.locator("table.list .pill.healthy").count() >= 1, what="the attempt")
    shot(page, "endpoint")

    page.click("table.list a >> nth=1")
    page.wait_for_url(re.compile(r"/deliveries/\d+/\d+$"))
    text = page.inner_text("main")
    assert "webhook.test" in text and "This is a test event from pg_webhook." in text
    assert page.locator("#payload").inner_text().startswith("{\n")
    assert "204" in page.inner_text("table.list")
    # Times are in the viewer's zone (Tokyo), not the server's UTC.
    t = page.locator("time").first
    assert not t.inner_text().endswith("UTC"), t.inner_text()
    assert t.get_attribute("title").endswith("ago)") or "UTC" in t.get_attribute("title")
    shot(page, "delivery")

    page.goto("/")
    row = page.locator("table.list tbody tr").first
    assert "Warehouse" in row.inner_text() and "Healthy" in row.inner_text()
    assert page.locator("svg.spark").count() == 1
    shot(page, "endpoints")


def test_a_failing_endpoint_goes_dead_and_its_deliveries_are_replayed(page, console, db, receiver, webhookd):
    state = {"fail": True}
    r = receiver(lambda n, req: (500, {}, b"database locked", 0) if state["fail"] else (204, {}, b"", 0))
    eid = q1(db, "SELECT webhook.create_endpoint(%s, '{orders.*}', description => 'CRM')", r.url)
    db.execute("SELECT webhook.emit('orders.insert', jsonb_build_object('n', g)) FROM generate_series(1, 5) g")
    webhookd(*FAST)
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'dead'") == 5, 30,
             what="5 dead deliveries")
    sign_in(page)
    assert "Failing" in page.inner_text("table.list")
    page.click("text=dead deliveries")
    page.wait_for_url(re.compile(r"/deliveries\?status=dead"))
    assert page.locator("table.list tbody tr").count() == 5
    assert "database locked" not in page.inner_text("table.list")  # errors show the status; the body is per attempt
    page.select_option("#f-endpoint", str(eid))
    page.click("button:has-text('Filter')")
    assert page.locator("table.list tbody tr").count() == 5
    shot(page, "deliveries")
    page.click("table.list tbody tr >> nth=0 >> a >> nth=0")
    assert "database locked" in page.inner_text("table.list")
    assert "Dead" in page.inner_text("h1")

    state["fail"] = False
    page.goto(f"/endpoints/{eid}")
    page.select_option("#window", "3600")
    page.click("button:has-text('Replay dead')")
    assert "5 dead deliveries requeued" in page.inner_text(".flash")
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 5, 30,
             what="the replayed deliveries to succeed")
    page.goto(f"/deliveries?status=succeeded&endpoint_id={eid}")
    assert page.locator("table.list tbody tr").count() == 5

    # Disable and enable, edit, rotate, reveal: each through the page's buttons.
    page.goto(f"/endpoints/{eid}")
    page.click("button:has-text('Disable')")
    assert "Disabled" in page.inner_text("h1")
    assert q1(db, "SELECT enabled FROM webhook.endpoint") is False
    page.click("button:has-text('Enable')")
    assert q1(db, "SELECT enabled FROM webhook.endpoint") is True
    page.click('text="Edit"')
    page.fill("#rate_limit", "25")
    page.fill("#description", "CRM (EU)")
    page.fill("#retry_schedule", "10s, 1m 30s, 2h")
    page.fill("#retry_max_age", "1day")
    page.click("button:has-text('Save changes')")
    assert "Saved." in page.inner_text(".flash")
    assert q1(db, "SELECT rate_limit FROM webhook.endpoint") == 25
    assert q1(db, "SELECT retry_schedule::text FROM webhook.endpoint") == '{00:00:10,00:01:30,02:00:00}'
    assert q1(db, "SELECT retry_max_age::text FROM webhook.endpoint") == "24:00:00"
    assert "10s, 1m 30s, 2h" in page.inner_text("section.panel:has-text('Configuration')")
    page.click('text="Edit"')
    assert page.input_value("#retry_schedule") == "10s, 1m 30s, 2h"
    page.fill("#retry_schedule", "")
    page.fill("#retry_max_age", "soon")
    page.click("button:has-text('Save changes')")
    assert "retry max age" in page.inner_text(".error")
    page.fill("#retry_max_age", "")
    page.click("button:has-text('Save changes')")
    assert "Saved." in page.inner_text(".flash")
    assert q1(db, "SELECT retry_schedule IS NULL AND retry_max_age IS NULL FROM webhook.endpoint") is True
    page.click('text="Edit"')
    page.fill("#max_in_flight", "0")
    page.click("button:has-text('Save changes')")
    assert "max_in_flight must be between 1 and 10000" in page.inner_text(".error")
    assert page.input_value("#description") == "CRM (EU)"
    page.goto(f"/endpoints/{eid}")
    page.click("button:has-text('Rotate secret')")
    rotated = page.inner_text("#secret-value")
    assert q1(db, "SELECT webhook.endpoint_secret(%s)", eid) == rotated
    page.goto(f"/endpoints/{eid}")
    page.click("button:has-text('Reveal secret')")
    assert page.inner_text("#secret-value") == rotated
    assert "secret revealed" in console.output()


def test_the_read_only_token_sees_no_actions_and_forms_need_their_csrf_token(page, console, db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', headers => '{\"authorization\": \"Bearer s3cret\"}')")
    sign_in(page, READ_TOKEN)
    page.goto(f"/endpoints/{eid}")
    assert page.locator("form[action$='/disable']").count() == 0
    assert "s3cret" not in page.content()
    assert page.locator('text="Edit"').count() == 0  # the button, not the footer's "edition"
    # Posting anyway (the session cookie is sent) is refused.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=console.url, cookies=cookies) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.content()).group(1)
        r = c.post(f"/endpoints/{eid}/disable", data={"csrf": csrf})
        assert r.status_code == 403 and "may only read" in r.text
    assert q1(db, "SELECT enabled FROM webhook.endpoint") is True

    page.context.clear_cookies()
    sign_in(page, ADMIN_TOKEN)
    page.goto(f"/endpoints/{eid}")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=console.url, cookies=cookies) as c:
        # No CSRF token, a wrong one, or another site's Origin: refused.
        assert c.post(f"/endpoints/{eid}/disable", data={}).status_code in (400, 415, 422)
        assert c.post(f"/endpoints/{eid}/disable", data={"csrf": "forged"}).status_code == 403
        r = c.post(f"/endpoints/{eid}/disable", data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert q1(db, "SELECT enabled FROM webhook.endpoint") is True
        # The same form from the console's own origin works.
        r = c.post(f"/endpoints/{eid}/disable", data={"csrf": csrf}, headers={"Origin": console.url})
        assert r.status_code == 303
    assert q1(db, "SELECT enabled FROM webhook.endpoint") is False
    # Signed out, the pages send you to sign in.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/login"))
    page.goto("/deliveries")
    assert "/login?next=%2Fdeliveries" in page.url


def test_screenshot_for_the_readme(page, console, db, receiver, webhookd):
    """The overview with a few endpoints in different states, saved as
    docs/console.png when CONSOLE_README_SCREENSHOT=1."""
    ok = receiver()
    slow = receiver(lambda n, req: (503, {}, b"", 0) if n % 3 == 0 else (204, {}, b"", 0))
    down = receiver(lambda n, req: (500, {}, b"", 0))
    for url, types, desc in [(ok.url, "{orders.*}", "Warehouse"), (slow.url, "{orders.*,reviews.*}", "CRM"),
                             (down.url, "{reviews.*}", "Support alerts")]:
        db.execute("SELECT webhook.create_endpoint(%s, %s, description => %s)", (url, types, desc))
    db.execute("SELECT webhook.create_endpoint('https://example.com/loyalty', '{loyalty.*}', "
               "description => 'Loyalty (paused)')")
    db.execute("SELECT webhook.disable_endpoint(max(id)) FROM webhook.endpoint")
    webhookd(*FAST)
    for _ in range(4):
        db.execute("SELECT webhook.emit('orders.insert', '{}') FROM generate_series(1, 10)")
        db.execute("SELECT webhook.emit('reviews.insert', '{}') FROM generate_series(1, 5)")
        time.sleep(0.3)
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'pending' "
                            "AND endpoint_id IN (SELECT id FROM webhook.endpoint WHERE enabled)") == 0, 30,
             what="the deliveries to settle")
    sign_in(page)
    page.emulate_media(color_scheme="light")
    shot(page, "overview")
    if os.environ.get("CONSOLE_README_SCREENSHOT") == "1":
        shutil.copy(ARTIFACTS / "overview.png", ROOT / "docs" / "console.png")
