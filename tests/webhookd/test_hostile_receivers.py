"""Receivers that attack webhookd: bytes the database cannot store, bodies
and heads without end, payloads larger than memory should allow, headers
edited by hand. None of them may stall delivery to the others, grow
webhookd's memory past a bound, or keep it from stopping."""

import datetime
import json
import re
import socket
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from support import editions
from support.cluster import SECRET, q, q1, wait_for

pytestmark = pytest.mark.version_independent

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


class RawReceiver:
    """A receiver written with plain sockets, for bytes no HTTP library
    would send: every request on a connection is answered with `reply`,
    then `stream` is sent over and over (up to `stream_limit` bytes or
    `stream_seconds`, whichever comes first) and the connection closed.
    `trickle` is sent after `reply` one byte every `trickle_interval`
    seconds (a slowloris), then the connection is closed; with `close`, the
    connection is closed right after the reply. `hangups` counts the
    connections whose client hung up while bytes were still being sent."""

    def __init__(self, reply, stream=b"", stream_limit=512 << 20, stream_seconds=10.0,
                 trickle=b"", trickle_interval=1.0, close=False):
        self.reply, self.stream = reply, stream
        self.stream_limit, self.stream_seconds = stream_limit, stream_seconds
        self.trickle, self.trickle_interval, self.close_after_reply = trickle, trickle_interval, close
        self.requests = []  # (head lines, body) of each request
        self.arrivals = []  # when each request had arrived (time.time())
        self.connections = 0
        self.hangups = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with self.lock:
            self.connections += 1
        buf = b""
        sending = False  # whether a reply is on its way (a hang-up then counts)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines]
                length = sum(int(v) for k, v in headers if k.lower() == "content-length")
                while len(buf) < length:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.requests.append((headers, body))
                    self.arrivals.append(time.time())
                sending = True
                conn.sendall(self.reply)
                if self.stream:
                    sent, until = 0, time.monotonic() + self.stream_seconds
                    while sent < self.stream_limit and time.monotonic() < until:
                        conn.sendall(self.stream)
                        sent += len(self.stream)
                    return
                if self.trickle:
                    for i in range(len(self.trickle)):
                        time.sleep(self.trickle_interval)
                        conn.sendall(self.trickle[i : i + 1])
                    return
                if self.close_after_reply:
                    # Everything sent arrives, then the end of the stream.
                    conn.shutdown(socket.SHUT_WR)
                    return
                sending = False
        except OSError:
            if sending:
                with self.lock:
                    self.hangups += 1
            return
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.closed = True
        self.sock.close()


def peak_rss_mb(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def endpoint(db, url, **kw):
    args = "".join(f", {k} => %s" for k in kw)
    return q1(db, f"SELECT webhook.create_endpoint(%s, '{{*}}', %s{args})", url, SECRET, *kw.values())


def orders(db, n):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    db.execute("INSERT INTO orders (customer) SELECT 'c' || g FROM generate_series(1, %s) g", (n,))


def attempts_of(db, ep):
    return q(
        db,
        "SELECT http_status, error, response_excerpt FROM webhook.attempts WHERE endpoint_id = %s ORDER BY id",
        ep,
    )


def sanitized(raw):
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def test_a_nul_byte_in_a_response_never_blocks_other_endpoints(db, receiver, webhookd):
    nul = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab\x00cd")
    bad_utf8 = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\xfe\xc3(")
    healthy = receiver()
    try:
        ep_nul, ep_bad = endpoint(db, nul.url), endpoint(db, bad_utf8.url)
        endpoint(db, healthy.url)
        # A short lease: a delivery whose outcome is not recorded would be
        # sent again within the test.
        w = webhookd("--lease", "2s", *FAST)
        orders(db, 30)
        wait_for(
            lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 90,
            20,
            what="every delivery recorded as succeeded",
        )
        time.sleep(2.5)
        ids = healthy.ids()
        assert len(ids) == 30 and len(set(ids)) == 30, f"{len(ids)} requests, {len(set(ids))} events"
        for ep, raw in [(ep_nul, b"ab\x00cd"), (ep_bad, b"\xff\xfe\xc3(")]:
            rows = attempts_of(db, ep)
            assert len(rows) == 30
            assert all(r == (200, None, sanitized(raw)) for r in rows), rows[:3]
        assert w.term(timeout=20) == 0
    finally:
        nul.close()
        bad_utf8.close()


REFUSE_POISON = """
CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.response_excerpt LIKE '%poison%' THEN
    RAISE EXCEPTION 'this excerpt cannot be stored' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON webhook.attempt_log
  FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();
"""


def test_an_outcome_the_database_refuses_is_recorded_as_an_error_and_never_blocks_the_others(
    db, receiver, webhookd
):
    # Whatever webhookd makes of a text, the database may still refuse it:
    # here a trigger refuses one receiver's answer.
    db.execute(REFUSE_POISON)
    poison = receiver(lambda n, req: (200, {}, b"poison", 0))
    healthy = receiver()
    ep_poison = endpoint(db, poison.url)
    endpoint(db, healthy.url)
    w = webhookd("--lease", "2s", *FAST)
    orders(db, 20)
    wait_for(
        lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 40,
        20,
        what="every delivery recorded",
    )
    time.sleep(2.5)
    assert healthy.count() == 20 and len(set(healthy.ids())) == 20
    assert poison.count() == 20
    rows = attempts_of(db, ep_poison)
    assert len(rows) == 20
    for status, error, excerpt in rows:
        assert status == 200 and excerpt is None
        assert "could not store" in error and "23514" in error, error
    assert w.term(timeout=20) == 0


REFUSE_EVERYTHING = """
CREATE FUNCTION public.refuse_everything() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'no lock for you' USING ERRCODE = 'lock_not_available';
END $$;
CREATE TRIGGER refuse_everything BEFORE INSERT ON webhook.attempt_log
  FOR EACH ROW EXECUTE FUNCTION public.refuse_everything();
"""


def test_sigterm_exits_even_when_no_outcome_can_be_written(db, receiver, webhookd):
    # A lock that is never granted: the database cannot take any outcome.
    db.execute(REFUSE_EVERYTHING)
    r = receiver()
    endpoint(db, r.url)
    w = webhookd("--shutdown-grace", "1s", *FAST)
    orders(db, 5)
    wait_for(lambda: r.count() == 5, what="the requests")
    time.sleep(0.5)
    started = time.monotonic()
    assert w.term(timeout=20) == 0
    assert time.monotonic() - started < 10
    assert "not written before exit" in w.output()
    assert q1(db, "SELECT count(*) FROM webhook.attempts") == 0


def test_responses_without_end_keep_webhookd_memory_bounded(db, receiver, webhookd):
    chunked = RawReceiver(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\nffffffffffffffff\r\n",
        stream=b"\0" * 65536,
    )
    endless = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", stream=b"x" * 65536)
    big_head = RawReceiver(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    healthy = receiver()
    try:
        ep_chunked, ep_endless, ep_head = (endpoint(db, x.url) for x in (chunked, endless, big_head))
        endpoint(db, healthy.url)
        w = webhookd(*FAST)
        orders(db, 3)
        wait_for(lambda: healthy.count() == 3, 20, what="the healthy endpoint's deliveries")
        wait_for(
            lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == 12,
            20,
            what="every delivery settled",
        )
        assert len(set(healthy.ids())) == 3
        rss = peak_rss_mb(w.proc)
        print(f"webhookd peak RSS with responses without end: {rss:.1f} MB")
        assert rss < 64, f"webhookd peaked at {rss:.1f} MB"
        # The status line was read: it is kept; the body was cut at the read
        # cap and the excerpt at 1 KiB.
        for ep, first in [(ep_chunked, "A"), (ep_endless, "x")]:
            rows = q(
                db,
                "SELECT http_status, octet_length(response_excerpt), left(response_excerpt, 1) "
                "FROM webhook.attempts WHERE endpoint_id = %s",
                ep,
            )
            assert len(rows) == 3 and all(r[0] == 200 and r[1] <= 1024 and r[2] == first for r in rows), rows
        rows = q(db, "SELECT error, octet_length(coalesce(response_excerpt, '')) FROM webhook.attempts WHERE endpoint_id = %s", ep_head)
        assert rows and all(e is not None and n <= 1024 for e, n in rows), rows
        assert all(octet_length <= 1024 for (octet_length,) in q(db, "SELECT octet_length(error) FROM webhook.attempts WHERE error IS NOT NULL"))
        assert w.term(timeout=20) == 0
    finally:
        for x in (chunked, endless, big_head):
            x.close()


def test_reserved_headers_edited_by_hand_are_dropped_and_named(db, webhookd):
    raw = RawReceiver(b"HTTP/1.1 204 No Content\r\n\r\n")
    try:
        ep = endpoint(db, raw.url)
        # Past the SQL API's checks, as an UPDATE by hand would be.
        hand_edited = {
            "transfer-encoding": "chunked",
            "content-length": "0",
            "host": "x",
            "Webhook-Signature": "v1,forged",
            "connection": "close",
            "te": "trailers",
            "upgrade": "h2c",
            "proxy-authorization": "Basic eA==",
            "expect": "100-continue",
            "x-bad": "a\x01b",
            "x-kept": "yes",
        }
        db.execute("UPDATE webhook.endpoint SET headers = %s WHERE id = %s", (json.dumps(hand_edited), ep))
        w = webhookd(*FAST)
        orders(db, 1)
        wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", what="the delivery")
        assert raw.count() == 1
        headers, body = raw.requests[0]
        names = [k.lower() for k, _ in headers]
        assert names.count("host") == 1 and dict(headers)["host"] == f"127.0.0.1:{raw.port}"
        assert "transfer-encoding" not in names and "te" not in names and "upgrade" not in names
        assert "expect" not in names and "proxy-authorization" not in names and "x-bad" not in names
        assert names.count("content-length") == 1
        assert int(dict((k.lower(), v) for k, v in headers)["content-length"]) == len(body)
        assert names.count("webhook-signature") == 1
        Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers})
        assert ("x-kept", "yes") in [(k.lower(), v) for k, v in headers]
        (error,) = q1(db, "SELECT array_agg(error) FROM webhook.attempts")
        for name in ["transfer-encoding", "content-length", "host", "Webhook-Signature", "connection", "te",
                     "upgrade", "proxy-authorization", "expect", "x-bad"]:
            assert f'"{name}"' in error or f" {name}" in error, (name, error)
        assert "x-kept" not in error
        assert "dropped" in w.output()
    finally:
        raw.close()


def test_a_large_event_to_many_endpoints_keeps_webhookd_memory_bounded(db, webhookd):
    receivers = [RawReceiver(b"HTTP/1.1 204 No Content\r\n\r\n") for _ in range(20)]
    try:
        for r in receivers:
            endpoint(db, r.url)
        w = webhookd(*FAST)
        # Events up to 8 MB.
        editions.raise_max_event_size(db, 8 * 1024 * 1024)
        blob = "x" * (5 * 1024 * 1024)
        q1(db, "SELECT webhook.emit('big.event', jsonb_build_object('blob', %s::text))", blob)
        wait_for(lambda: all(r.count() == 1 for r in receivers), 60, what="the event at every receiver")
        wait_for(
            lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 20,
            what="every delivery recorded",
        )
        rss = peak_rss_mb(w.proc)
        print(f"webhookd peak RSS with a 5 MB event to 20 endpoints: {rss:.1f} MB")
        body = q1(db, "SELECT body FROM webhook.event_log").encode()
        for r in receivers:
            headers, got = r.requests[0]
            assert got == body
            Webhook(SECRET).verify(got, {k.lower(): v for k, v in headers})
        assert rss < 100, f"webhookd peaked at {rss:.1f} MB"
        assert w.term(timeout=20) == 0
    finally:
        for r in receivers:
            r.close()


# ------------------------------------------------ interims, hang-ups, slowloris

# Two interim (1xx) responses, neither an answer: a client reads past them.
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n" + b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
# One attempt and one retry, then dead: a hostile endpoint settles quickly.
ONE_RETRY = ["--retry-schedule", "150ms", "--retry-jitter", "0", "--poll-interval", "200ms", "--shutdown-grace", "1s"]
# Words an error may use for a connection that ended early.
ENDED_EARLY = re.compile(r"clos|end of file|eof|incomplete|reset", re.I)


def attempt_details(db, ep):
    return [
        {"status": s, "error": e, "excerpt": x, "ms": ms}
        for s, e, x, ms in q(
            db,
            "SELECT http_status, error, response_excerpt, duration_ms FROM webhook.attempts "
            "WHERE endpoint_id = %s ORDER BY id",
            ep,
        )
    ]


def statuses_of(db, ep):
    return sorted(r[0] for r in q(db, "SELECT status FROM webhook.deliveries WHERE endpoint_id = %s", ep))


def settled(db, n):
    return lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == n


def assert_exactly_once_and_verified(healthy, n):
    ids = healthy.ids()
    assert len(ids) == n and len(set(ids)) == n, f"{len(ids)} requests, {len(set(ids))} events"
    for req in healthy.requests:
        Webhook(SECRET).verify(req["body"], req["headers"])


def assert_answered_promptly(db, ep, within_ms=1000):
    """Every attempt to `ep` was answered, and its outcome taken, at once:
    nothing another receiver did held it up."""
    rows = attempt_details(db, ep)
    assert rows and all(r["ms"] < within_ms for r in rows), [(r["status"], round(r["ms"])) for r in rows]


def assert_memory_bounded(w, what):
    rss = peak_rss_mb(w.proc)
    print(f"webhookd peak RSS with {what}: {rss:.1f} MB")
    assert rss < 64, f"webhookd peaked at {rss:.1f} MB"


def test_a_flood_of_interim_responses_is_never_taken_for_an_answer_and_ends_at_the_timeout(
    db, receiver, webhookd
):
    # 1xx responses without end (about 40 KB a write, as fast as the socket
    # takes them), and 20,000 of them before a real answer.
    endless = RawReceiver(b"", stream=INTERIM * 512, stream_seconds=8.0)
    finite = RawReceiver(INTERIM * 10_000 + b"HTTP/1.1 204 No Content\r\n\r\n")
    healthy = receiver()
    try:
        ep_endless = endpoint(db, endless.url, timeout="2 seconds")
        ep_finite = endpoint(db, finite.url, timeout="2 seconds")
        ep_healthy = endpoint(db, healthy.url)
        w = webhookd(*ONE_RETRY)
        orders(db, 3)
        wait_for(lambda: healthy.count() == 3, 10, what="the healthy endpoint's deliveries")
        wait_for(settled(db, 9), 30, what="every delivery settled")
        assert_memory_bounded(w, "a flood of 1xx responses")
        assert_exactly_once_and_verified(healthy, 3)
        # hyper parses interim responses without a limit, so the flood
        # takes CPU from the other requests on the delivery thread (about
        # 150 ms each here on loopback; a network's bandwidth bounds it
        # far lower), but they never wait for it to end ...
        assert_answered_promptly(db, ep_healthy, within_ms=1500)
        # ... and outcomes are written at once: claims and the recorder
        # run on a thread of their own (with one thread, no outcome was
        # written until the flood's timeout).
        flood_ended = q1(db, "SELECT min(attempted_at) FROM webhook.attempts WHERE endpoint_id = %s", ep_endless)
        recorded = q1(db, "SELECT max(attempted_at) FROM webhook.attempts WHERE endpoint_id IN (%s, %s)",
                      ep_healthy, ep_finite)
        assert recorded < flood_ended - datetime.timedelta(milliseconds=500), (recorded, flood_ended)
        # No final status ever came: no status, and the timeout said, at
        # the endpoint's 2 seconds.
        rows = attempt_details(db, ep_endless)
        assert len(rows) == 6, rows
        for r in rows:
            assert r["status"] is None and r["error"] == "timeout" and r["excerpt"] is None, r
            assert 1900 <= r["ms"] < 3500, r
        assert statuses_of(db, ep_endless) == ["dead"] * 3
        # The answer after the interims is the one recorded.
        rows = attempt_details(db, ep_finite)
        assert [(r["status"], r["error"]) for r in rows] == [(204, None)] * 3, rows
        assert statuses_of(db, ep_finite) == ["succeeded"] * 3
        assert w.term(timeout=20) == 0
    finally:
        endless.close()
        finite.close()


def test_a_connection_closed_mid_response_is_recorded_with_what_arrived_and_why_it_ended(
    db, receiver, webhookd
):
    mid_head = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Le", close=True)
    mid_body = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this much", close=True)
    healthy = receiver()
    try:
        ep_head, ep_body = endpoint(db, mid_head.url), endpoint(db, mid_body.url)
        ep_healthy = endpoint(db, healthy.url)
        # Twelve failures in a row would pause the endpoint (the circuit
        # breaker, tested elsewhere): here every attempt is to be seen.
        w = webhookd(*FAST, "--shutdown-grace", "1s", "--breaker-threshold", "0")
        orders(db, 3)
        wait_for(settled(db, 9), 20, what="every delivery settled")
        assert_memory_bounded(w, "connections closed mid-response")
        # No status line completed: no status; an error that says the
        # connection ended; retried, then dead.
        rows = attempt_details(db, ep_head)
        assert len(rows) == 12, rows
        for r in rows:
            assert r["status"] is None and r["error"] and ENDED_EARLY.search(r["error"]), r
            assert "timeout" not in r["error"], r
        assert statuses_of(db, ep_head) == ["dead"] * 3
        # The status came: it stands (the receiver took the event), with what
        # of the body arrived and why the rest did not.
        rows = attempt_details(db, ep_body)
        assert len(rows) == 3, rows
        for r in rows:
            assert r["status"] == 200 and r["excerpt"] == "only this much", r
            assert r["error"] and ENDED_EARLY.search(r["error"]) and "timeout" not in r["error"], r
        assert statuses_of(db, ep_body) == ["succeeded"] * 3
        assert_exactly_once_and_verified(healthy, 3)
        assert_answered_promptly(db, ep_healthy)
        assert w.term(timeout=20) == 0
    finally:
        mid_head.close()
        mid_body.close()


def test_a_close_delimited_body_is_read_to_its_end_on_a_connection_never_reused(db, receiver, webhookd):
    body = b"close-delimited: the body ends where the connection does"
    # HTTP/1.0 without Content-Length, and HTTP/1.1 with Connection: close
    # and no length: both bodies end at the end of the stream.
    http10 = RawReceiver(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, close=True)
    http11 = RawReceiver(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body, close=True)
    healthy = receiver()
    try:
        ep10, ep11 = endpoint(db, http10.url), endpoint(db, http11.url)
        ep_healthy = endpoint(db, healthy.url)
        w = webhookd(*FAST)
        orders(db, 10)
        wait_for(settled(db, 30), 20, what="every delivery settled")
        assert_memory_bounded(w, "close-delimited bodies")
        for ep, raw in [(ep10, http10), (ep11, http11)]:
            rows = attempt_details(db, ep)
            # One attempt each, none failed on a connection the receiver had closed.
            assert [(r["status"], r["error"], r["excerpt"]) for r in rows] == [(200, None, body.decode())] * 10, rows
            assert raw.count() == 10 and raw.connections == 10, (raw.count(), raw.connections)
            assert len({dict((k.lower(), v) for k, v in h)["webhook-id"] for h, _ in raw.requests}) == 10
        assert_exactly_once_and_verified(healthy, 10)
        assert_answered_promptly(db, ep_healthy)
        assert w.term(timeout=20) == 0
    finally:
        http10.close()
        http11.close()


def test_a_slowloris_receiver_is_cut_off_at_the_endpoint_timeout_and_never_slows_the_others(
    db, receiver, webhookd
):
    # One byte a second: of the status line, or of the body after a prompt head.
    head = RawReceiver(b"", trickle=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    body = RawReceiver(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n", trickle=b"y" * 64)
    healthy = receiver()
    try:
        ep_head = endpoint(db, head.url, timeout="2 seconds")
        ep_body = endpoint(db, body.url, timeout="2 seconds")
        ep_healthy = endpoint(db, healthy.url)
        w = webhookd(*ONE_RETRY)
        orders(db, 3)
        wait_for(lambda: healthy.count() == 3, 10, what="the healthy endpoint's deliveries")
        wait_for(settled(db, 9), 15, what="every delivery settled")
        assert_memory_bounded(w, "slowloris receivers")
        # The healthy endpoint got its events before the slow ones' first
        # timeout: nothing waited for them.
        first_slow = min(head.arrivals[0], body.arrivals[0])
        lag = max(r["at"] for r in healthy.requests) - first_slow
        assert lag < 1.0, f"the healthy endpoint's last event came {lag:.2f}s after the slow ones' first"
        # The status line never completed: no status, a timeout, at the
        # endpoint's 2 seconds; retried once, then dead.
        rows = attempt_details(db, ep_head)
        assert len(rows) == 6, rows
        for r in rows:
            assert r["status"] is None and r["error"] == "timeout" and r["excerpt"] is None, r
            assert 1900 <= r["ms"] < 3500, r
        assert statuses_of(db, ep_head) == ["dead"] * 3
        # The status came at once and stands; the body was cut at the same
        # deadline (what had come of it is kept).
        rows = attempt_details(db, ep_body)
        assert len(rows) == 3, rows
        for r in rows:
            assert r["status"] == 200 and 1900 <= r["ms"] < 3500, r
            assert r["excerpt"] and set(r["excerpt"]) == {"y"} and len(r["excerpt"]) <= 3, r
        assert statuses_of(db, ep_body) == ["succeeded"] * 3
        assert_exactly_once_and_verified(healthy, 3)
        assert_answered_promptly(db, ep_healthy)
        # Every slow connection was hung up on (none kept half-open).
        wait_for(
            lambda: head.hangups == head.connections == 6 and body.hangups == body.connections == 3,
            5,
            what="webhookd to hang up on every slow connection",
        )
        assert w.term(timeout=20) == 0
        # The body was cut, and the attempt says so, as it does for a body cut
        # by a closed connection: an excerpt alone would pass for the whole.
        for r in rows:
            assert r["error"] and "timeout" in r["error"], r
    finally:
        head.close()
        body.close()
