"""What waking the dispatchers costs: anyone may `NOTIFY webhook`, and a
running webhookd answers each notification with at most one claim."""

import re
import time
import urllib.request

from support.cluster import as_role, free_port, q1, role, wait_for


def test_waking_dispatchers_costs_a_role_with_no_grant_at_most_a_claim_each(db, dbname, webhookd):
    """Anyone may NOTIFY webhook; each notification costs at most one claim
    that finds nothing, never a delivery or a row."""
    role(db, "nobody_waker")
    port = free_port()
    webhookd("--metrics-addr", f"127.0.0.1:{port}", "--poll-interval", "60s")

    def claims():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(v) for v in re.findall(r"^webhookd_claims_total (\S+)$", text, re.M))

    def started():
        try:
            return claims() >= 1
        except OSError:
            return False

    wait_for(started, 20, 0.2, what="webhookd's first claim")
    time.sleep(0.5)
    before = claims()
    n = 300
    with as_role(dbname, "nobody_waker") as nobody:
        for i in range(n):
            nobody.execute("SELECT pg_notify('webhook', %s)", (str(i),))
    time.sleep(1.0)
    woke = claims() - before
    assert 1 <= woke <= n, woke
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0
    assert q1(db, "SELECT count(*) FROM webhook.delivery") == 0
