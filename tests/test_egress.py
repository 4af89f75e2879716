"""webhookd's HTTP against real peers on loopback: a real forward proxy
(tinyproxy, by --proxy and by the proxy environment, and NO_PROXY), an
HTTP/2 receiver over TLS (hypercorn, ALPN h2), and receivers that require
a client certificate (mutual TLS). Nothing leaves 127.0.0.0/8."""

import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import SECRET, issue, make_ca, private_ca, q, q1, wait_for

FAST = ["--retry-schedule", "150ms,150ms,150ms", "--retry-jitter", "0", "--poll-interval", "200ms"]
PROXY_VARS = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]


def environment(**proxy_vars):
    """No proxy variable from this process's environment, only these."""
    env = {v: None for v in PROXY_VARS}
    env.update(proxy_vars)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def orders_endpoint(db, url):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    return q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", url, SECRET)


def insert_orders(db, n, tag="c"):
    with db.transaction():
        for i in range(n):
            db.execute("INSERT INTO orders (customer) VALUES (%s)", (f"{tag}{i}",))


def succeeded(db, n):
    return lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == n


def verify(req):
    Webhook(SECRET).verify(req["body"], req["headers"])


# ---------------------------------------------------------------- tinyproxy


class Tinyproxy:
    """Debian's tinyproxy in the foreground, on 127.0.0.1 and a free port,
    with its own configuration and log in `d`."""

    def __init__(self, d):
        exe = shutil.which("tinyproxy")
        if exe is None:
            pytest.fail("tinyproxy is not installed: scripts/setup.sh installs it (package tinyproxy-bin)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = d / f"tinyproxy-{self.port}.log"
        conf = d / f"tinyproxy-{self.port}.conf"
        conf.write_text(
            f"Port {self.port}\n"
            "Listen 127.0.0.1\n"
            "Allow 127.0.0.1\n"
            "Timeout 30\n"
            "MaxClients 64\n"
            f'LogFile "{self.log}"\n'
            "LogLevel Info\n"
            'ViaProxyName "pgwebhook-test-proxy"\n'
        )
        self.proc = subprocess.Popen(
            [exe, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"tinyproxy exited: {self.proc.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, 0.05, what="tinyproxy to listen")

    def requests(self, line):
        """How many requests the proxy logged whose request line starts so."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return len(re.findall(r"Request \(file descriptor \d+\): " + re.escape(line), text))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()


@pytest.fixture
def tinyproxy(tmp_path):
    started = []

    def start():
        p = Tinyproxy(tmp_path)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_deliveries_arrive_through_a_real_forward_proxy_and_no_proxy_bypasses_it(
    db, receiver, webhookd, tinyproxy
):
    r = receiver()
    orders_endpoint(db, r.url)
    proxy = tinyproxy()
    line = f"POST http://127.0.0.1:{r.port}/hook "
    # (how the proxy is given, webhookd's arguments, its proxy variables,
    # whether requests go through the proxy)
    ways = [
        ("--proxy", ["--proxy", proxy.url], {}, True),
        ("HTTP_PROXY", [], {"HTTP_PROXY": proxy.url}, True),
        ("http_proxy", [], {"http_proxy": proxy.url}, True),
        ("--proxy and NO_PROXY", ["--proxy", proxy.url], {"NO_PROXY": "127.0.0.1"}, False),
        ("HTTP_PROXY and NO_PROXY", [], {"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}, False),
        ("HTTP_PROXY and no_proxy of a range", [], {"HTTP_PROXY": proxy.url, "no_proxy": "127.0.0.0/8"}, False),
    ]
    delivered = 0
    for i, (how, args, env, proxied) in enumerate(ways):
        before, logged = r.count(), proxy.requests(line)
        w = webhookd(*FAST, *args, env=environment(**env))
        insert_orders(db, 5, tag=f"w{i}-")
        delivered += 5
        wait_for(succeeded(db, delivered), 20, what=f"deliveries with {how}")
        assert w.term(timeout=20) == 0
        new = r.requests[before:]
        assert len(new) == 5 and len({x["headers"]["webhook-id"] for x in new}) == 5, (how, len(new))
        for req in new:
            verify(req)
            assert req["headers"]["user-agent"].startswith("pg_webhook/"), req["headers"]
        vias = [req["headers"].get("via") for req in new]
        if proxied:
            assert all(v and "pgwebhook-test-proxy" in v and "tinyproxy" in v for v in vias), (how, vias)
            assert proxy.requests(line) == logged + 5, (how, proxy.log.read_text()[-2000:])
        else:
            assert vias == [None] * 5, (how, vias)
            assert proxy.requests(line) == logged, how
    assert r.count() == delivered == len(set(r.ids()))
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE error IS NOT NULL") == 0


# ---------------------------------------------------------------- HTTP/2


class H2Receiver:
    """An HTTPS receiver (hypercorn, offering h2 and http/1.1 by ALPN) that
    records each request's HTTP version, headers and body, and the client's
    port (one per connection)."""

    def __init__(self, certfile, keyfile):
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        self.requests = []
        self.lock = threading.Lock()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}/hook"
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile, config.keyfile = certfile, keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
        config.graceful_timeout = 1.0
        config.accesslog = None
        self.started = threading.Event()

        async def main():
            self.loop = asyncio.get_running_loop()
            self.stopping = asyncio.Event()
            self.started.set()
            await serve(self.app, config, shutdown_trigger=self.stopping.wait)

        self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self.thread.start()
        self.started.wait(10)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, 0.05, what="hypercorn to listen")

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        req = {
            "http_version": scope["http_version"],
            "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body,
            "path": scope["path"],
            "client_port": scope["client"][1],
        }
        with self.lock:
            self.requests.append(req)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


@pytest.fixture
def h2_receiver():
    made = []

    def make(leaf):
        r = H2Receiver(*leaf)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_an_http2_receiver_gets_every_delivery_over_http2_each_verified(db, webhookd, h2_receiver, tmp_path):
    ca, leaf = private_ca(tmp_path)
    r = h2_receiver(leaf)
    orders_endpoint(db, r.url)
    w = webhookd(*FAST, "--ca-file", str(ca), env=environment())
    insert_orders(db, 50)
    # Larger than HTTP/2's initial flow-control window (64 KiB): the body
    # goes out as the receiver's WINDOW_UPDATEs allow.
    big = q1(db, "SELECT webhook.emit('big.event', jsonb_build_object('blob', repeat('b', 300000)))")
    wait_for(succeeded(db, 51), 30, what="every delivery")
    assert r.count() == 51
    assert {x["http_version"] for x in r.requests} == {"2"}
    ids = [x["headers"]["webhook-id"] for x in r.requests]
    assert len(set(ids)) == 51
    for req in r.requests:
        verify(req)
        assert req["headers"]["content-type"] == "application/json"
    (big_req,) = [x for x in r.requests if x["headers"]["webhook-id"] == str(big)]
    assert len(big_req["body"]) > 300_000
    first = {x["client_port"] for x in r.requests}
    # A second burst is multiplexed on the connections already open.
    insert_orders(db, 30, tag="again")
    wait_for(succeeded(db, 81), 30, what="the second burst")
    again = r.requests[51:]
    assert len(again) == 30 and {x["http_version"] for x in again} == {"2"}
    for req in again:
        verify(req)
    later = {x["client_port"] for x in again}
    print(f"HTTP/2: 51 requests on {len(first)} connection(s), then 30 on {len(later)}")
    assert later <= first, (first, later)
    assert len({x["headers"]["webhook-id"] for x in r.requests}) == 81
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE error IS NOT NULL OR http_status <> 204") == 0
    assert w.term(timeout=20) == 0


def test_https_through_the_proxy_is_a_connect_tunnel_that_still_speaks_http2(
    db, webhookd, h2_receiver, tinyproxy, tmp_path
):
    ca, leaf = private_ca(tmp_path)
    r = h2_receiver(leaf)
    orders_endpoint(db, r.url)
    proxy = tinyproxy()
    w = webhookd(*FAST, "--ca-file", str(ca), env=environment(HTTPS_PROXY=proxy.url))
    insert_orders(db, 10)
    wait_for(succeeded(db, 10), 20, what="every delivery")
    assert r.count() == 10 and {x["http_version"] for x in r.requests} == {"2"}
    for req in r.requests:
        verify(req)
        # A tunnel: the proxy never saw the request, so added nothing to it.
        assert "via" not in req["headers"]
    assert proxy.requests(f"CONNECT localhost:{r.port} ") >= 1, proxy.log.read_text()[-2000:]
    assert w.term(timeout=20) == 0


# ---------------------------------------------------------------- mutual TLS

# What a refused client certificate looks like in an attempt's error.
CERTIFICATE_REFUSED = re.compile(r"certificate|unknown.?ca|bad.?cert", re.I)


def mutual_tls(tmp_path, key_kind):
    """A server CA and its localhost leaf; a client CA and a certificate
    for webhookd it signed, with a key of `key_kind`."""
    ca, leaf = private_ca(tmp_path, "server-ca")
    client_ca = make_ca(tmp_path, "client-ca")
    cert, key = issue(tmp_path, client_ca, f"webhookd-{key_kind}", "/CN=webhookd", key_kind)
    return ca, leaf, client_ca, cert, key


def first_errors(db, n):
    return q(db, "SELECT http_status, error FROM webhook.attempts ORDER BY id LIMIT %s", n)


def test_a_receiver_requiring_a_client_certificate_refuses_webhookd_without_ours_and_takes_it(
    db, receiver, webhookd, tmp_path
):
    ca, leaf, client_ca, cert, key = mutual_tls(tmp_path, "rsa-pkcs8")
    stranger_ca = make_ca(tmp_path, "stranger-ca")
    stranger_cert, stranger_key = issue(tmp_path, stranger_ca, "stranger", "/CN=stranger", "rsa-pkcs8")
    r = receiver(tls=leaf, client_ca=client_ca)
    orders_endpoint(db, r.url)
    slow = ["--retry-schedule", "1s,1s,1s,1s", "--retry-jitter", "0", "--poll-interval", "200ms"]
    insert_orders(db, 1)
    # No client certificate: the receiver ends the handshake, nothing arrives.
    w = webhookd(*slow, "--ca-file", str(ca), env=environment())
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.attempts") >= 1, 20, what="the first attempt")
    assert w.term(timeout=20) == 0
    # A certificate of a CA the receiver does not trust: refused too.
    w = webhookd(*slow, "--ca-file", str(ca), "--client-cert", str(stranger_cert), "--client-key",
                 str(stranger_key), env=environment())
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.attempts") >= 2, 20, what="the second attempt")
    assert w.term(timeout=20) == 0
    errors = first_errors(db, 2)
    print("attempts refused by the receiver:", errors)
    for status, error in errors:
        assert status is None and error and CERTIFICATE_REFUSED.search(error), errors
    assert r.count() == 0
    # Ours: the retry and five more arrive, each verified, each with it.
    w = webhookd(*FAST, "--ca-file", str(ca), "--client-cert", str(cert), "--client-key", str(key),
                 env=environment())
    insert_orders(db, 5, tag="m")
    wait_for(succeeded(db, 6), 20, what="every delivery")
    assert r.count() == 6 and len(set(r.ids())) == 6
    for req in r.requests:
        verify(req)
        assert req["peer"] == {"commonName": "webhookd"}, req["peer"]
    assert w.term(timeout=20) == 0


@pytest.mark.parametrize("key_kind", ["rsa-pkcs1", "ec-sec1", "ec-pkcs8"])
def test_a_client_key_in_each_pem_form_is_accepted_for_mutual_tls(db, receiver, webhookd, tmp_path, key_kind):
    ca, leaf, client_ca, cert, key = mutual_tls(tmp_path, key_kind)
    r = receiver(tls=leaf, client_ca=client_ca)
    orders_endpoint(db, r.url)
    w = webhookd(*FAST, "--ca-file", str(ca), "--client-cert", str(cert), "--client-key", str(key),
                 env=environment())
    insert_orders(db, 5)
    wait_for(succeeded(db, 5), 20, what="every delivery")
    assert r.count() == 5 and len(set(r.ids())) == 5
    for req in r.requests:
        verify(req)
        assert req["peer"] == {"commonName": "webhookd"}, req["peer"]
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE error IS NOT NULL") == 0
    assert w.term(timeout=20) == 0
