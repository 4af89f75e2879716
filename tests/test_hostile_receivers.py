"""Receivers that attack webhookd: bytes the database cannot store, bodies
and heads without end, payloads larger than memory should allow, headers
edited by hand. None of them may stall delivery to the others, grow
webhookd's memory past a bound, or keep it from stopping."""

import json
import socket
import threading
import time

from standardwebhooks.webhooks import Webhook

from conftest import SECRET, q, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


class RawReceiver:
    """A receiver written with plain sockets, for bytes no HTTP library
    would send: every request on a connection is answered with `reply`,
    then `stream` is sent over and over (up to `stream_limit` bytes or
    `stream_seconds`, whichever comes first) and the connection closed."""

    def __init__(self, reply, stream=b"", stream_limit=512 << 20, stream_seconds=10.0):
        self.reply, self.stream = reply, stream
        self.stream_limit, self.stream_seconds = stream_limit, stream_seconds
        self.requests = []  # (head lines, body) of each request
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
        buf = b""
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
                conn.sendall(self.reply)
                if self.stream:
                    sent, until = 0, time.monotonic() + self.stream_seconds
                    while sent < self.stream_limit and time.monotonic() < until:
                        conn.sendall(self.stream)
                        sent += len(self.stream)
                    return
        except OSError:
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
        # Superuser, in the emitting session only: events up to 8 MB.
        db.execute("SET webhook.max_event_size = '8MB'")
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
