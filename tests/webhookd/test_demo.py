"""The shop demo, non-interactively: every expected event arrives verified at
the right receiver, and nothing unexpected does."""

import os
import subprocess
from collections import Counter

import pytest

from support.cluster import PG_MAJOR, PORT, ROOT
from support.demo import EXPECTED, LINE
from support.webhookd import WEBHOOKD


@pytest.mark.native_only("scripts/demo.sh plays the shop on the native extension, in a cluster of its own")
def test_demo_delivers_the_scenario():
    env = dict(
        os.environ,
        DEMO_PORT_BASE=str(PORT + 21),
        DEMO_DIR=str(ROOT / "target" / f"demo-test-cluster-pg{PG_MAJOR}"),
        DEMO_PACE="0",
        WEBHOOKD=str(WEBHOOKD),
    )
    out = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "rejected" not in text
    delivered = Counter()
    failed_first = 0
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        if "simulated failure" in line:
            failed_first += 1
            continue
        delivered[(m.group(1), m.group(3))] += 1
    assert delivered == EXPECTED, text
    # The warehouse failed its first two attempts: the retries succeeded.
    assert failed_first == 2
    assert "backlog: 0 pending" in text
