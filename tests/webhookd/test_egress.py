"""webhookd's HTTP against real peers on loopback: a real forward proxy
(tinyproxy, by --proxy and by the proxy environment, and NO_PROXY), an
HTTP/2 receiver over TLS (hypercorn, ALPN h2), and receivers that require
a client certificate (mutual TLS). Nothing leaves 127.0.0.0/8."""

import asyncio
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, dsn, q, q1, wait_for
from support.tls import issue, make_ca, private_ca
from support.webhookd import WEBHOOKD, webhookd_env

pytestmark = pytest.mark.version_independent

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


# ---------------------------------------------------------------- the proxy's exemption
#
# The proxy is exempt from the SSRF guard (the operator's choice), but only
# the connection to it: never a host named like it. Every combination of
# where the proxy comes from and NO_PROXY, with endpoints on the proxy's own
# name, on loopback and in a denied range: a guarded address is never
# connected to directly, and what is proxied reaches the proxy.


class ProxyStub:
    """A forward proxy stub (a test fixture) on `ip`: records each request
    line and answers 204 — to a CONNECT too, which makes it a failed tunnel:
    the request reached the proxy, which is all these tests ask."""

    def __init__(self, ip):
        self.lines = []
        stub = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                got = b""
                while b"\r\n\r\n" not in got:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    got += chunk
                stub.lines.append(got.split(b"\r\n", 1)[0].decode("latin-1"))
                self.request.sendall(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")

        self.server = socketserver.ThreadingTCPServer((ip, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Listener:
    """Accepts and counts connections on `ips` (one port): a receiver on a
    guarded address, which nothing may reach directly."""

    def __init__(self, *ips):
        self.accepted = 0
        self.socks = []
        port = 0
        for ip in ips:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            s = socket.socket(family)
            try:
                s.bind((ip, port))
            except OSError:
                s.close()
                continue
            s.listen(16)
            port = s.getsockname()[1]
            self.socks.append(s)
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()
        self.port = port

    def serve(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self):
        for s in self.socks:
            s.close()


def guarded_webhookd(dbname, log, *args, env):
    """webhookd with the SSRF guard on (no --allow-private-targets)."""
    e = webhookd_env(DATABASE_URL=dsn(dbname), WEBHOOKD_LOG="info")
    e.update(env)
    return subprocess.Popen([str(WEBHOOKD), "run", *FAST, *args], stdout=log, stderr=subprocess.STDOUT, env=e)


SOURCES = ["--proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy+https_proxy"]
NO_PROXIES = [None, "localhost", "127.0.0.0/8", "*"]
# The proxy on the receivers' name (localhost, loopback: the guard refuses
# it), or on an address of its own with localhost in --deny-cidr.
PROXY_HOSTS = ["localhost", "127.0.0.5"]


def proxied(source, no_proxy, scheme):
    """Whether a URL of `scheme` on localhost goes through the proxy (the
    NO_PROXY rules as curl has them: a name matches itself, a range only
    IP literals, * everything)."""
    if no_proxy in ("localhost", "*"):
        return False
    return {
        "--proxy": True,
        "ALL_PROXY": True,
        "http_proxy+https_proxy": True,
        "HTTP_PROXY": scheme == "http",
        "HTTPS_PROXY": scheme == "https",
    }[source]


@pytest.mark.parametrize("proxy_host", PROXY_HOSTS)
@pytest.mark.parametrize("no_proxy", NO_PROXIES)
@pytest.mark.parametrize("source", SOURCES)
def test_only_the_connection_to_the_proxy_is_exempt_from_the_guard(db, dbname, tmp_path, source, no_proxy, proxy_host):
    stub = ProxyStub("127.0.0.1" if proxy_host == "localhost" else proxy_host)
    named = Listener("127.0.0.1", "::1")
    loopback = Listener("127.0.0.2")
    denied = Listener("127.0.0.9")
    try:
        proxy = f"http://{proxy_host}:{stub.port}"
        deny = "127.0.0.9/32" if proxy_host == "localhost" else "127.0.0.9/32,127.0.0.1/32,::1/128"
        urls = {
            "name-http": f"http://localhost:{named.port}/name",
            "name-https": f"https://localhost:{named.port}/name",
            "loopback": f"http://127.0.0.2:{loopback.port}/loopback",
            "denied": f"http://127.0.0.9:{denied.port}/denied",
        }
        orders_endpoint(db, urls["name-http"])
        for url in list(urls.values())[1:]:
            q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", url, SECRET)
        args, env = ["--deny-cidr", deny], {}
        if source == "--proxy":
            args += ["--proxy", proxy]
        else:
            for var in source.split("+"):
                env[var] = proxy
        if no_proxy is not None:
            env["NO_PROXY"] = no_proxy
        with open(tmp_path / "webhookd.log", "wb") as log:
            w = guarded_webhookd(dbname, log, *args, env=env)
            try:
                insert_orders(db, 1)
                wait_for(
                    lambda: w.poll() is None and q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == 4,
                    30, what="every delivery settled",
                )
            finally:
                w.terminate()
                w.wait(20)
        output = (tmp_path / "webhookd.log").read_text(errors="replace")
        errors = dict(q(db, "SELECT e.url, array_agg(coalesce(a.error, a.http_status::text) ORDER BY a.id) FROM webhook.attempts a "
                            "JOIN webhook.endpoint e ON e.id = a.endpoint_id GROUP BY e.url"))
        case = (source, no_proxy, proxy_host, errors, stub.lines, output[-3000:])
        # Never a direct connection to a guarded address.
        assert (named.accepted, loopback.accepted, denied.accepted) == (0, 0, 0), case
        refusal = "refused by the SSRF guard: loopback address" if proxy_host == "localhost" else "is in --deny-cidr"
        for key, scheme in [("name-http", "http"), ("name-https", "https")]:
            line = f"POST {urls[key]} HTTP/1.1" if scheme == "http" else f"CONNECT localhost:{named.port} HTTP/1.1"
            if proxied(source, no_proxy, scheme):
                assert line in stub.lines, (key, case)
                assert not any("refused" in e for e in errors[urls[key]]), (key, case)
            else:
                assert line not in stub.lines, (key, case)
                assert all(refusal in e for e in errors[urls[key]]), (key, case)
        # IP literals are the endpoint's own address: checked before any
        # proxy, and never sent to one.
        assert all("refused by the SSRF guard: loopback address" in e for e in errors[urls["loopback"]]), case
        assert all("is in --deny-cidr 127.0.0.9/32" in e for e in errors[urls["denied"]]), case
        assert not any("127.0.0.2" in x or "127.0.0.9" in x for x in stub.lines), case
    finally:
        for x in (stub, named, loopback, denied):
            x.close()


@pytest.mark.parametrize("how", ["--proxy", "HTTPS_PROXY", "by name"])
def test_a_proxy_in_a_denied_range_is_a_clear_start_up_error(dbname, how):
    proxy = "http://localhost:3128" if how == "by name" else "http://user:secret@127.0.0.1:3128"
    args = ["--proxy", proxy] if how != "HTTPS_PROXY" else []
    env = {"HTTPS_PROXY": proxy} if how == "HTTPS_PROXY" else {}
    e = webhookd_env(DATABASE_URL=dsn(dbname), **env)
    out = subprocess.run([str(WEBHOOKD), "run", "--deny-cidr", "127.0.0.0/8", *args],
                         capture_output=True, text=True, timeout=20, env=e)
    assert out.returncode != 0, out
    assert "127.0.0.1 is in --deny-cidr 127.0.0.0/8" in out.stderr, out.stderr
    assert "secret" not in out.stderr + out.stdout
