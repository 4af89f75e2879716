"""`webhookd listen` and `webhookd status` as a user runs them."""

import socket
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, dsn, q1, wait_for
from support.editions import EDITION
from support.webhookd import WEBHOOKD

pytestmark = pytest.mark.version_independent


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listen(*args):
    port = free_port()
    proc = subprocess.Popen(
        [str(WEBHOOKD), "listen", "--addr", f"127.0.0.1:{port}", "--secret", SECRET, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 10, what="webhookd listen")
    return proc, f"http://127.0.0.1:{port}/"


def post(url, body, msg_id="1", ts=None, secret=SECRET, signature=None):
    ts = ts or datetime.now(tz=timezone.utc)
    sig = signature or Webhook(secret).sign(msg_id, ts, body)
    req = urllib.request.Request(
        url,
        data=body.encode(),
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(ts.timestamp())),
            "webhook-signature": sig,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


BODY = '{"type":"orders.insert","timestamp":"2026-11-27T19:50:15Z","data":{"table":"shop.orders","op":"insert","new":{"id":7,"total":12.5},"old":null}}'


def test_listen_verifies_prints_and_exits_after_max():
    proc, url = listen("--max", "2", "--fail-first", "1")
    assert post(url, BODY, "41") == 503  # simulated failure, still verified
    assert post(url, BODY, "41") == 204
    assert post(url, BODY, "42", signature="v1,bm90IGEgc2lnbmF0dXJl") == 401
    assert post(url, BODY, "43", ts=datetime.fromtimestamp(time.time() - 600, tz=timezone.utc)) == 401
    assert post(url, BODY, "44") == 204
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "orders.insert" in out and "shop.orders id=7 total=12.5" in out
    assert out.count("rejected") == 2 and "tolerance" in out


def test_listen_strict_exits_nonzero_on_a_bad_request():
    proc, url = listen("--strict")
    assert post(url, BODY, "1", secret="whsec_" + "QUJD" * 8) == 401
    proc.communicate(timeout=10)
    assert proc.returncode == 1


def test_listen_refuses_a_malformed_secret():
    out = subprocess.run([str(WEBHOOKD), "listen", "--secret", "nope"], capture_output=True, text=True, timeout=10)
    assert out.returncode != 0 and "whsec_" in out.stderr


def test_status_reports_backlog_and_health(db, dbname):
    ep = q1(db, "SELECT webhook.create_endpoint('https://hooks.example.com/shop')")
    db.execute("SELECT webhook.emit('a.b', '{}')")
    db.execute("SELECT webhook.route()")
    db.execute("SELECT webhook.disable_endpoint(%s)", (ep,))
    out = subprocess.run([str(WEBHOOKD), "status", "--database-url", dsn(dbname)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"pg_webhook: {EDITION} edition 0.2.0\n")
    assert "backlog: 1 pending" in out.stdout
    assert "https://hooks.example.com/shop" in out.stdout and "DISABLED" in out.stdout


def test_status_says_so_when_the_database_has_no_pg_webhook():
    # The cluster's postgres database has neither edition: a report of an
    # empty backlog would read as all is well.
    out = subprocess.run([str(WEBHOOKD), "status", "--database-url", dsn()], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0 and out.stdout == ""
    assert "pg_webhook is not installed in this database" in out.stderr


def test_run_refuses_bad_flags():
    out = subprocess.run(
        [str(WEBHOOKD), "run", "--database-url", "postgres://x", "--retry-schedule", "5 parsecs"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode != 0 and "--retry-schedule" in out.stderr
    out = subprocess.run(
        [str(WEBHOOKD), "run", "--database-url", "postgres://x", "--worker", "w" * 129],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode != 0 and "--worker must be 1 to 128 bytes" in out.stderr
