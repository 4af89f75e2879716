"""webhookd's connections to PostgreSQL over TLS, by libpq's sslmode, against
a throwaway cluster of this module's own that accepts TCP connections with
TLS only (hostssl), with certificates made here by the openssl CLI."""

import os
import shutil
import signal
import subprocess
import time

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import CLUSTER_DIR, PORT, ROOT, SECRET, q1, wait_for
from support.webhookd import WEBHOOKD

pytestmark = pytest.mark.version_independent

TLS_DIR = CLUSTER_DIR.parent / (CLUSTER_DIR.name + "-tls")
# Beside the suite's own cluster port, so two suites with their own ports
# never share this one either.
TLS_PORT = PORT + 7


def cluster(cmd, *args):
    subprocess.run([str(ROOT / "scripts" / "cluster.sh"), cmd, str(TLS_DIR), *args], check=True)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=pg_webhook test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )


@pytest.fixture(scope="module")
def tls_cluster():
    cluster("stop")
    shutil.rmtree(TLS_DIR, ignore_errors=True)
    certs = TLS_DIR / "certs"
    certs.mkdir(parents=True)
    make_ca(certs, "ca")
    make_ca(certs, "other-ca")
    # For the name localhost only: 127.0.0.1 is not in it (verify-ca passes
    # there, verify-full does not).
    (certs / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=certs,
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=certs,
    )
    os.chmod(certs / "server.key", 0o600)
    if os.geteuid() == 0:
        shutil.chown(certs, "postgres")
        for f in certs.iterdir():
            shutil.chown(f, "postgres")
    cluster(
        "start", str(TLS_PORT), "ssl = on",
        f"ssl_cert_file = '{certs / 'server.crt'}'", f"ssl_key_file = '{certs / 'server.key'}'",
    )
    sock = dict(host=str(TLS_DIR / "sock"), port=TLS_PORT, user="postgres", autocommit=True)
    # TCP only with TLS; the unix socket for this module's own setup.
    hba = TLS_DIR / "data" / "pg_hba.conf"
    hba.write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n"
    )
    with psycopg.connect(dbname="postgres", **sock) as c:
        c.execute("SELECT pg_reload_conf()")
        c.execute("DROP DATABASE IF EXISTS tls")
        c.execute("CREATE DATABASE tls")
    with psycopg.connect(dbname="tls", **sock) as c:
        c.execute("CREATE EXTENSION pg_webhook")
        c.execute("ALTER DATABASE tls SET webhook.allow_http = on")
    yield certs, sock
    cluster("stop")


def url(host="localhost", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://postgres@{host}:{TLS_PORT}/tls" + (f"?{query}" if query else "")


def status(database_url, *args):
    return subprocess.run(
        [str(WEBHOOKD), "status", "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_verify_full_with_the_ca_delivers_a_webhook_end_to_end(tls_cluster, receiver):
    certs, sock = tls_cluster
    r = receiver()
    with psycopg.connect(dbname="tls", **sock) as db:
        q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", r.url, SECRET)
        log = ROOT / "target" / "test-logs" / f"webhookd-tls-{time.time_ns()}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(WEBHOOKD), "run", "--allow-private-targets", "--poll-interval", "200ms",
                 "--metrics-addr", "127.0.0.1:0"],
                env=dict(os.environ, DATABASE_URL=url(sslmode="verify-full", sslrootcert=certs / "ca.crt")),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            q1(db, "SELECT webhook.emit('tls.test', '{\"over\": \"tls\"}')")
            wait_for(lambda: r.count() == 1, 20, what="the webhook")
            Webhook(SECRET).verify(r.requests[0]["body"], r.requests[0]["headers"])
            wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", what="its outcome")
            # Every connection webhookd holds (claim, record, LISTEN) is
            # encrypted.
            names = wait_for(
                lambda: q1(
                    db,
                    "SELECT array_agg(a.application_name ORDER BY a.application_name) FROM pg_stat_activity a "
                    "JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'webhookd%%' AND s.ssl",
                ),
                what="webhookd's connections",
            )
            assert {"webhookd claim", "webhookd listen", "webhookd record"} <= set(names), names
            assert q1(db, "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                          "WHERE a.application_name LIKE 'webhookd%%' AND NOT s.ssl") == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0


def test_verify_full_with_a_wrong_ca_fails_with_a_clear_error(tls_cluster):
    certs, _ = tls_cluster
    out = status(url(sslmode="verify-full", sslrootcert=certs / "other-ca.crt"))
    assert out.returncode != 0
    assert "certificate" in out.stderr and "UnknownIssuer" in out.stderr, out.stderr


def test_verify_full_checks_the_host_name_and_verify_ca_does_not(tls_cluster):
    certs, _ = tls_cluster
    out = status(url(host="127.0.0.1", sslmode="verify-full", sslrootcert=certs / "ca.crt"))
    assert out.returncode != 0 and "certificate" in out.stderr, out.stderr
    out = status(url(host="127.0.0.1", sslmode="verify-ca", sslrootcert=certs / "ca.crt"))
    assert out.returncode == 0, out.stderr
    # require with a root certificate behaves as verify-ca.
    out = status(url(host="127.0.0.1", sslmode="require", sslrootcert=certs / "other-ca.crt"))
    assert out.returncode != 0 and "UnknownIssuer" in out.stderr, out.stderr


def test_require_encrypts_without_a_root_certificate(tls_cluster):
    out = status(url(host="127.0.0.1", sslmode="require"))
    assert out.returncode == 0, out.stderr
    assert "backlog:" in out.stdout


def test_the_ca_file_flag_and_the_key_value_form(tls_cluster):
    certs, _ = tls_cluster
    out = status(url(sslmode="verify-full"), "--database-ca-file", str(certs / "ca.crt"))
    assert out.returncode == 0, out.stderr
    kv = f"host=localhost port={TLS_PORT} user=postgres dbname=tls sslmode=verify-full sslrootcert='{certs / 'ca.crt'}'"
    out = status(kv)
    assert out.returncode == 0, out.stderr
    out = status(url(sslmode="verify-full"))
    assert out.returncode != 0 and "needs a root certificate" in out.stderr, out.stderr


def test_sslmode_disable_is_refused_by_a_server_that_wants_tls(tls_cluster):
    out = status(url(sslmode="disable"))
    assert out.returncode != 0
    assert "no pg_hba.conf entry" in out.stderr and "no encryption" in out.stderr, out.stderr
