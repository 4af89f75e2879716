"""The SSRF guard and the operator's --allow-cidr / --deny-cidr lists.

Traffic goes to loopback only. A question like "would webhookd connect to
192.88.99.1?" is asked of a webhookd inside `unshare --net` (a network
namespace with no routes, not even loopback up), reaching PostgreSQL over
its unix socket: nothing can leave even if the guard failed, and the error
recorded tells a refusal by the guard from a failed connection."""

import signal
import subprocess
import time

import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import CLUSTER_DIR, PORT, ROOT, SECRET, dsn, q, q1, wait_for
from support.webhookd import WEBHOOKD, webhookd_env

pytestmark = pytest.mark.version_independent

FAST = ["--retry-schedule", "100ms", "--retry-jitter", "0", "--poll-interval", "200ms"]


class Bare:
    """webhookd without the suite's --allow-private-targets; with
    `netns`, in a network namespace of its own, over the unix socket."""

    def __init__(self, dbname, *args, netns=False, env=None):
        self.log_path = ROOT / "target" / "test-logs" / f"webhookd-ssrf-{dbname}-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = dsn(dbname)
        cmd = [str(WEBHOOKD), "run", *FAST, *args]
        if netns:
            url = f"postgresql:///{dbname}?host={CLUSTER_DIR / 'sock'}&port={PORT}&user=postgres"
            cmd = ["unshare", "--net", *cmd]
        e = webhookd_env(DATABASE_URL=url, WEBHOOKD_LOG="info")
        e.update(env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=e)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self):
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def bare(dbname):
    started = []

    def start(*args, **kw):
        w = Bare(dbname, *args, **kw)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def setup(db, *urls):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    return [q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", url, SECRET) for url in urls]


def settled(db, n):
    return lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status <> 'pending'") == n


def errors_by_url(db):
    return {
        url: errors
        for url, errors in q(
            db,
            "SELECT e.url, array_agg(a.error ORDER BY a.id) FROM webhook.attempts a "
            "JOIN webhook.endpoint e ON e.id = a.endpoint_id GROUP BY e.url",
        )
    }


def test_a_loopback_receiver_in_an_allowed_cidr_is_reached_without_allow_private_targets(db, receiver, bare):
    r = receiver()
    setup(db, r.url)
    w = bare("--allow-cidr", "10.0.0.0/8", "--allow-cidr", "192.168.0.0/16,127.0.0.0/8")
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", what="the delivery")
    assert r.count() == 1
    Webhook(SECRET).verify(r.requests[0]["body"], r.requests[0]["headers"])
    assert w.stop() == 0


def test_deny_cidr_wins_over_allow_private_targets_and_names_its_rule(db, receiver, bare):
    r = receiver()
    setup(db, r.url, f"http://[::ffff:127.0.0.1]:{r.port}/mapped")
    # From the environment, comma separated.
    bare("--allow-private-targets", env={"WEBHOOKD_DENY_CIDR": "10.0.0.0/8,127.0.0.1/32"})
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(settled(db, 2), what="both deliveries dead")
    assert r.count() == 0
    errors = [e for es in errors_by_url(db).values() for e in es]
    # One attempt each: a refusal is dead at once.
    assert len(errors) == 2
    assert all("127.0.0.1 is in --deny-cidr 127.0.0.1/32" in e for e in errors), errors


def test_a_bad_cidr_is_a_clear_startup_error(db):
    out = subprocess.run(
        [str(WEBHOOKD), "run", "--database-url", "postgres://x", "--deny-cidr", "10.0.0.0/33"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode != 0 and "--deny-cidr" in out.stderr and "not a CIDR" in out.stderr, out.stderr


SPECIAL = {
    "http://192.88.99.1/relay": "6to4 relay anycast address",
    "http://[2002:7f00:1::1]/6to4": "6to4 address of a forbidden IPv4 address",
    "http://[::ffff:0:7f00:1]/translated": "IPv4-translated address",
    "http://[fec0::1]/site-local": "site-local (private) address",
    "http://[64:ff9b:1::a00:1]/nat64": "local-use NAT64 address",
    "http://[2001::1]/teredo": "Teredo address",
}


def test_special_ranges_are_refused_by_the_guard_in_a_namespace_without_routes(db, bare):
    setup(db, *SPECIAL)
    w = bare(netns=True)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(settled(db, len(SPECIAL)), what="every delivery dead")
    found = errors_by_url(db)
    for url, reason in SPECIAL.items():
        assert all(f"refused by the SSRF guard: {reason}" in e for e in found[url]), (url, found[url])
    assert w.stop() == 0


def test_allow_cidr_opens_a_refused_range_in_a_namespace_without_routes(db, bare):
    (ep,) = setup(db, "http://192.88.99.1/relay")
    bare("--allow-cidr", "192.88.99.0/24", netns=True)
    db.execute("INSERT INTO orders (customer) VALUES ('x')")
    wait_for(settled(db, 1), what="the delivery dead")
    errors = q(db, "SELECT error FROM webhook.attempts WHERE endpoint_id = %s", ep)
    # Allowed: webhookd tried to connect, and the namespace has no route.
    assert errors and all("SSRF" not in e and "connect" in e for (e,) in errors), errors
