"""`/healthz` (alive) and `/readyz` (delivering) as an orchestrator sees
them: with no database at all, with the database refusing webhookd's
sessions as a stopped server does, and once it is back; and `webhookd
healthcheck --ready`, which says why not."""

import subprocess
import urllib.error
import urllib.request

from support.cluster import connect, free_port, wait_for
from support.webhookd import WEBHOOKD
from test_delivery import FAST, setup_orders


def probe(port, path):
    """(status, body) of a probe; (0, why) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def healthcheck(port, *args):
    return subprocess.run([str(WEBHOOKD), "healthcheck", "--addr", f"127.0.0.1:{port}", *args],
                          capture_output=True, text=True, timeout=20)


def test_with_no_database_at_all_it_is_alive_and_not_ready(webhookd):
    port, nothing = free_port(), free_port()
    webhookd("--metrics-addr", f"127.0.0.1:{port}", *FAST,
             env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{nothing}/shop"})
    wait_for(lambda: probe(port, "/healthz")[0] == 200, 20, what="webhookd serving its probes")
    assert probe(port, "/healthz") == (200, "ok\n")
    assert probe(port, "/readyz") == (503, "the database is unreachable\n")
    done = healthcheck(port, "--ready")
    assert done.returncode == 1
    assert "503" in done.stderr and "the database is unreachable" in done.stderr
    assert healthcheck(port).returncode == 0


def test_readiness_follows_the_database_away_and_back(db, dbname, receiver, webhookd):
    port = free_port()
    r = receiver()
    setup_orders(db, r.url)
    webhookd("--metrics-addr", f"127.0.0.1:{port}", *FAST)
    wait_for(lambda: probe(port, "/readyz") == (200, "ready\n"), 20, what="webhookd ready")
    assert healthcheck(port, "--ready").returncode == 0
    with connect("postgres") as su:
        # What a stopped server looks like to webhookd: its sessions end and
        # no new one is let in.
        su.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
        try:
            su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = %s AND application_name LIKE 'webhookd%%'", (dbname,))
            wait_for(lambda: probe(port, "/readyz")[0] == 503, 30, what="webhookd not ready")
            assert probe(port, "/readyz")[1] in ("the database is unreachable\n", "the last claim round failed\n")
            # Alive all the while: restarting it would not bring the database back.
            assert probe(port, "/healthz") == (200, "ok\n")
            done = healthcheck(port, "--ready")
            assert done.returncode == 1 and "503" in done.stderr, done.stderr
        finally:
            su.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")
    wait_for(lambda: probe(port, "/readyz") == (200, "ready\n"), 60, what="webhookd ready again")
    db.execute("INSERT INTO orders (customer) VALUES ('after the outage')")
    wait_for(lambda: r.count() == 1, 30, what="the event committed after the outage")
