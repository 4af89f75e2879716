"""Shared fixtures: a throwaway PostgreSQL cluster, one fresh database per
test, real `webhookd` processes and real HTTP receivers on 127.0.0.1."""

import http.server
import itertools
import json
import os
import secrets
import select
import signal
import socket
import socketserver
import sys
import ssl
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The PostgreSQL major version under test (`make e2e-test PG=17` sets it):
# the cluster's server and the extension installed into it. 15 is the
# host's own; 17 and 18 run in their Debian roots (scripts/pg-root.sh).
PG_MAJOR = os.environ.get("PGWEBHOOK_PG", "15")
# Both can be overridden, so two suites (two checkouts, or a focused run
# beside the full one) can run at once without sharing a cluster.
CLUSTER_DIR = Path(os.environ.get("PGWEBHOOK_TEST_CLUSTER", ROOT / "target" / f"test-cluster-pg{PG_MAJOR}"))
# Fixed ports stay below the ephemeral range (32768+): a client socket of
# the suite itself could otherwise hold the port a server needs.
PORT = int(os.environ.get("PGWEBHOOK_TEST_PORT", "25439"))
WEBHOOKD = Path(os.environ.get("WEBHOOKD", ROOT / "target" / "release" / "webhookd"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

_db_counter = itertools.count()


def dsn(dbname="postgres"):
    return f"postgresql://postgres@127.0.0.1:{PORT}/{dbname}"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "version_independent: what it tests is webhookd's own side (HTTP, TLS, the console, "
        "containers' faults), which no PostgreSQL version changes; `make test` runs it on the first "
        "version of PG_VERSIONS only (`-m 'not version_independent'` on the others, reported as deselected)",
    )


def pg_dir(option):
    """A directory of the PostgreSQL under test (`pg_config --sharedir`,
    `--pkglibdir`, ...) as this host sees it: inside the version's root."""
    run = [str(ROOT / "scripts" / "pg-root.sh"), PG_MAJOR]
    root = subprocess.run([*run, "path"], capture_output=True, text=True, check=True).stdout.strip()
    inside = subprocess.run(
        [*run, "run", f"/usr/lib/postgresql/{PG_MAJOR}/bin/pg_config", option],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return Path(root) / inside.lstrip("/")


def cluster(cmd, *args):
    subprocess.run([str(ROOT / "scripts" / "cluster.sh"), cmd, str(CLUSTER_DIR), *args], check=True)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster("start", str(PORT), "max_connections = 300")
    yield PORT
    cluster("stop")


@pytest.fixture
def dbname(pg_cluster):
    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(name), autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_webhook")
        c.execute("ALTER DATABASE {} SET webhook.allow_http = on".format(name))
    yield name
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(dbname):
    """An autocommit connection to a fresh database with the extension."""
    with psycopg.connect(dsn(dbname), autocommit=True) as c:
        yield c


def connect(dbname, **kw):
    return psycopg.connect(dsn(dbname), autocommit=True, **kw)


def q(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def q1(conn, sql, *args):
    row = conn.execute(sql, args).fetchone()
    return row[0] if row is not None and len(row) == 1 else row


def wait_for(predicate, timeout=20.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def next_notification(conn, timeout=10.0):
    """The first notification `conn` (which LISTENs) receives, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([conn.fileno()], [], [], 0.5)
        for n in conn.notifies(timeout=0.1, stop_after=1):
            return n
    return None


# ---------------------------------------------------------------- receivers


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each request.

    `behaviour(n, request)` returns (status, headers, body, delay_seconds) for
    the n-th request (1-based); the default answers 204 at once. With
    `tls=(certfile, keyfile)` it serves HTTPS, as https://localhost:<port>;
    with `client_ca` (a PEM file) as well, only clients presenting a
    certificate that CA signed get in (mutual TLS), and each request records
    the subject of the certificate it came with (`peer`)."""

    def __init__(self, behaviour=None, port=0, tls=None, client_ca=None):
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.behaviour = behaviour or (lambda n, req: (204, {}, b"", 0))
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections += 1

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                req = {
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "path": self.path,
                    "at": time.time(),
                }
                if isinstance(self.connection, ssl.SSLSocket):
                    cert = self.connection.getpeercert() or {}
                    req["peer"] = dict(x[0] for x in cert.get("subject", ()))
                with receiver.lock:
                    receiver.requests.append(req)
                    n = len(receiver.requests)
                status, headers, out, delay = receiver.behaviour(n, req)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if isinstance(out, int):
                        # A huge body, streamed without holding it in memory.
                        self.send_header("content-length", str(out))
                        self.end_headers()
                        chunk = b"x" * 65536
                        sent = 0
                        while sent < out:
                            self.wfile.write(chunk[: min(len(chunk), out - sent)])
                            sent += len(chunk)
                    else:
                        self.send_header("content-length", str(len(out)))
                        self.end_headers()
                        self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        if client_ca and not tls:
            raise ValueError("client_ca needs tls")
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(client_ca))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def ids(self):
        with self.lock:
            return [r["headers"]["webhook-id"] for r in self.requests]

    def events(self):
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(behaviour=None, port=0, tls=None, client_ca=None):
        r = Receiver(behaviour, port, tls, client_ca)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


# ---------------------------------------------------------------- certificates


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(d, name="ca"):
    """A self-signed CA (openssl CLI): its certificate, its key beside it
    (`name`.pem, `name`.key in `d`)."""
    ca = d / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=pg_webhook test {name}",
            "-keyout", d / f"{name}.key", "-out", ca)
    return ca


def private_ca(d, name="ca"):
    """A CA and a certificate for localhost signed by it (openssl CLI):
    (CA certificate, (leaf certificate, leaf key)). `name` keeps several
    CAs apart in one directory."""
    ca = make_ca(d, name)
    leaf = issue(d, ca, f"{name}-localhost", "/CN=localhost", "rsa-pkcs8",
                 "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    return ca, (str(leaf[0]), str(leaf[1]))


# How each kind of private key is made, and the PEM label it comes out with.
KEY_KINDS = {
    "rsa-pkcs8": (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "PRIVATE KEY"),
    "rsa-pkcs1": (["genrsa", "-traditional", "2048"], "RSA PRIVATE KEY"),
    "ec-pkcs8": (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "PRIVATE KEY"),
    "ec-sec1": (["ecparam", "-name", "prime256v1", "-genkey", "-noout"], "EC PRIVATE KEY"),
}


def issue(d, ca, name, subject, key_kind="rsa-pkcs8", ext=None):
    """A certificate for `subject` signed by the CA `ca` (its key beside it,
    as private_ca leaves it), with a fresh key of `key_kind`: (cert, key)."""
    gen, label = KEY_KINDS[key_kind]
    key, csr, cert, extfile = (d / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
    openssl(gen[0], "-out", key, *gen[1:])
    assert key.read_text().startswith(f"-----BEGIN {label}-----"), key.read_text()[:40]
    openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    extfile.write_text(ext or "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca.with_suffix(".key"), "-CAcreateserial",
            "-days", "2", "-extfile", extfile, "-out", cert)
    return cert, key


# ---------------------------------------------------------------- webhookd


PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def webhookd_env(**extra):
    """This process's environment for a webhookd, without any proxy setting
    or OpenTelemetry exporter setting (test traffic stays on loopback; tests
    of proxies and of span export set their own)."""
    e = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS and not k.startswith("OTEL_")
    }
    e.update(extra)
    return e


class Webhookd:
    """`env` is added to this process's environment; a None value removes
    that variable (HTTP_PROXY=None: no proxy from the environment)."""

    def __init__(self, dbname, *args, env=None):
        self.log_path = ROOT / "target" / "test-logs" / f"webhookd-{dbname}-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        e = webhookd_env(DATABASE_URL=dsn(dbname), WEBHOOKD_LOG="info")
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        self.proc = subprocess.Popen(
            [str(WEBHOOKD), "run", "--allow-private-targets", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=e,
        )

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def webhookd(dbname):
    started = []

    def start(*args, db=None, env=None):
        w = Webhookd(db or dbname, *args, env=env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


# Containers (tests/test_container.py, test_compose.py, test_faults.py).
def docker_answers():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


DOCKER = docker_answers()
needs_docker = pytest.mark.skipif(
    not DOCKER and os.environ.get("CI") != "true",
    reason="no Docker engine answers `docker info`: the container tests need one (they are required under CI=true)",
)
# The tag the tests build the images under (compose.yaml's PG_WEBHOOK_VERSION).
IMAGE_VERSION = "test"


def docker(*args, check=True, timeout=300):
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {out.returncode}\n{out.stdout}{out.stderr}")
    return out


def inspect(name, fmt):
    return docker("inspect", "-f", fmt, name).stdout.strip()


@pytest.fixture(scope="session")
def images():
    """pg-webhook/webhookd:test and pg-webhook/postgres:test-pg<N> (the
    version under test), built by scripts/image.sh from this checkout's
    release build and extension package (`make package`)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "image.sh"), "all"],
        env=dict(
            os.environ,
            IMAGE_TAG=f"pg-webhook/webhookd:{IMAGE_VERSION}",
            PG_IMAGE_TAG=f"pg-webhook/postgres:{IMAGE_VERSION}-pg{PG_MAJOR}",
            WEBHOOKD=str(WEBHOOKD),
        ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return {"webhookd": f"pg-webhook/webhookd:{IMAGE_VERSION}", "postgres": f"pg-webhook/postgres:{IMAGE_VERSION}-pg{PG_MAJOR}"}


# The console (tests/test_console_*.py): tokens made for each run, as
# the console refuses weak ones (32 random bytes, as the README says).
ADMIN_TOKEN = secrets.token_hex(32)
READ_TOKEN = secrets.token_hex(32)
CONSOLE_ROLE = "pgwh_console"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """`webhookd console` on a free loopback port, connected as a role
    granted webhook.grant_manager() (not a superuser), as a deployment
    runs it. `env` is added to its environment; a None value removes that
    variable."""

    def __init__(self, dbname, env=None):
        with psycopg.connect(dsn(dbname), autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CONSOLE_ROLE,)).fetchone():
                c.execute(f"CREATE ROLE {CONSOLE_ROLE} LOGIN")
            c.execute(f"SELECT webhook.grant_manager('{CONSOLE_ROLE}')")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "target" / "test-logs" / f"console-{dbname}-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        e = webhookd_env(
            DATABASE_URL=f"postgresql://{CONSOLE_ROLE}@127.0.0.1:{PORT}/{dbname}",
            WEBHOOKD_CONSOLE_ADMIN_TOKEN=ADMIN_TOKEN,
            WEBHOOKD_CONSOLE_READ_TOKEN=READ_TOKEN,
            WEBHOOKD_LOG="info",
        )
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        self.proc = subprocess.Popen(
            [str(WEBHOOKD), "console", "--addr", f"127.0.0.1:{self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=e,
        )
        wait_for(self.ready, 20, 0.05, what="the console answering /healthz")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"webhookd console exited {self.proc.returncode}:\n{self.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def output(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def console(dbname):
    c = Console(dbname)
    yield c
    c.stop()


# ---------------------------------------------------------------- PgBouncer

# PgBouncer 1.24 (prepared statements in transaction mode) comes from the
# PostgreSQL 17 root (Debian 13), whatever version is under test: it speaks
# the same protocol to each.
PGBOUNCER_ROOT_PG = "17"


class PgBouncer:
    """PgBouncer on a free loopback port in front of the test cluster, in
    `mode` (session, transaction or statement), every database passed
    through and `users` let in (trust, as the cluster itself). `settings`
    are more lines of its [pgbouncer] section. `dsn(dbname)` connects
    through it."""

    def __init__(self, mode="transaction", users=("postgres",), settings=None):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        lines = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "users.txt"),
            "pool_mode": mode,
            "max_client_conn": "200",
            "default_pool_size": "10",
            "max_prepared_statements": "100",
            "admin_users": "postgres",
            "ignore_startup_parameters": "extra_float_digits,options",
            **(settings or {}),
        }
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={PORT}\n\n[pgbouncer]\n"
            + "".join(f"{k} = {v}\n" for k, v in lines.items())
        )
        for f in self.dir.iterdir():
            os.chmod(f, 0o644)
        self.log = open(self.dir / "pgbouncer.log", "wb")
        # The root first, however long building it takes (once per machine;
        # `make test` builds it in the background from the start), so that
        # the wait below is for PgBouncer alone.
        subprocess.run([str(ROOT / "scripts" / "pg-root.sh"), PGBOUNCER_ROOT_PG, "path", "build"],
                       check=True, stdout=subprocess.DEVNULL)
        # A session of its own: the whole chain (the root's runner, runuser,
        # pgbouncer) is stopped by one signal to its process group.
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "pg-root.sh"), PGBOUNCER_ROOT_PG, "run", "--postgres",
             "pgbouncer", str(self.dir / "pgbouncer.ini")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=60, what="pgbouncer to listen")

    def dsn(self, dbname, user="postgres"):
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def output(self):
        self.log.flush()
        return (self.dir / "pgbouncer.log").read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer(pg_cluster):
    """Starts PgBouncers: `pgbouncer("transaction")` (or session,
    statement; keywords as PgBouncer's) returns a running one; all are
    stopped after the test."""
    started = []

    def start(mode="transaction", **kw):
        b = PgBouncer(mode, **kw)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def portable_db(pg_cluster, dbname):
    """A database with the portable edition (scripts/portable.py) and pgcrypto,
    beside the native one of `db`; pg_webhook's library is never loaded in it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import portable

    name = f"{dbname}_portable"
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        with connect(name) as c:
            c.execute("CREATE EXTENSION pgcrypto")
            c.execute(portable.edition())
            c.execute("UPDATE webhook.portable_settings SET allow_http = true, max_event_size = 1073741823")
            yield c
    finally:
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
