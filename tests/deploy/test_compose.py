"""compose.yaml, the shop demo as a container stack: `docker compose up`
starts PostgreSQL with pg_webhook (pg-webhook/postgres), webhookd and the
three receivers, the one-shot `shop` service plays sql/demo/scenario.sql,
and every event of the scenario arrives verified at the right receiver, as
in `make demo` (tests/webhookd/test_demo.py). The stack runs on its own Docker
network; its database port is published on loopback only.

Skipped, saying why, where no Docker engine answers; required when CI=true."""

import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections import Counter

import httpx
import psycopg
import pytest

from support.cluster import PG_MAJOR, ROOT, free_port, wait_for
from support.demo import EXPECTED, LINE
from support.docker import IMAGE_VERSION, inspect, needs_docker

pytestmark = needs_docker


def compose_command():
    """`docker compose` (v2) where the plugin exists, else Compose v1."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (scripts/setup.sh installs docker-compose)")


@pytest.fixture
def stack(images):
    project = f"pgwh-shop-{uuid.uuid4().hex[:8]}"
    port, console_port = free_port(), free_port()
    # compose.yaml's own defaults, but for the images' tag, the port and the pace.
    env = {k: v for k, v in os.environ.items()
           if k not in set(re.findall(r"\$\{(\w+):-", (ROOT / "compose.yaml").read_text()))}
    env.update(PG_WEBHOOK_VERSION=IMAGE_VERSION, PG_WEBHOOK_PG=PG_MAJOR, SHOP_PG_PORT=str(port), SHOP_CONSOLE_PORT=str(console_port),
               SHOP_PACE="0")
    cmd = [*compose_command(), "-p", project, "-f", str(ROOT / "compose.yaml")]

    def compose(*args, check=True, timeout=300):
        out = subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, f"{' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    class Stack:
        pass

    s = Stack()
    s.compose, s.project, s.port, s.console_port = compose, project, port, console_port
    try:
        yield s
    finally:
        logs = compose("logs", "--no-color", check=False)
        print(logs.stdout[-20000:], logs.stderr[-2000:])
        compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


def container_of(stack, service):
    ids = stack.compose("ps", "-q", service).stdout.split()
    assert len(ids) == 1, (service, ids)
    return ids[0]


def test_compose_version_is_the_workspace_version():
    """compose.yaml's image tags default to the version `make image` builds."""
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    tags = set(re.findall(r"\$\{PG_WEBHOOK_VERSION:-([^}]*)\}", (ROOT / "compose.yaml").read_text()))
    assert tags == {version}, tags


def test_the_compose_stack_delivers_the_shop_demo_end_to_end(stack):
    stack.compose("up", "-d", timeout=600)
    shop = container_of(stack, "shop")
    wait_for(lambda: inspect(shop, "{{.State.Status}}") == "exited", 120, 0.5, what="the scenario to finish")
    assert inspect(shop, "{{.State.ExitCode}}") == "0", stack.compose("logs", "--no-color", "shop").stdout

    # The database as a user reaches it: the published loopback port.
    url = f"postgres://postgres:shop@127.0.0.1:{stack.port}/shop"
    with psycopg.connect(url, autocommit=True) as db:
        def settled():
            return db.execute("SELECT count(*) FILTER (WHERE status <> 'succeeded'), count(*) "
                              "FROM webhook.deliveries").fetchone()

        wait_for(lambda: settled()[0] == 0 and settled()[1] > 0, 60, 0.5, what="every delivery succeeded")
        assert settled()[1] == sum(EXPECTED.values())
        # webhookd's own role, not the superuser.
        assert db.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'webhookd'").fetchone()[0] >= 1

    webhookd = container_of(stack, "webhookd")
    wait_for(lambda: inspect(webhookd, "{{.State.Health.Status}}") == "healthy", 60, 0.5, what="webhookd healthy")
    assert inspect(webhookd, "{{.HostConfig.ReadonlyRootfs}}") == "true"

    text = stack.compose("logs", "--no-color", "warehouse", "crm", "support").stdout
    assert "rejected" not in text
    delivered, failed_first = Counter(), 0
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        if "simulated failure" in line:
            failed_first += 1
        else:
            delivered[(m.group(1), m.group(3))] += 1
    assert delivered == EXPECTED, text
    assert failed_first == 2, text

    # The console, as the README says: its API with the admin token that
    # console-tokens made at the first start (random, never in a log).
    console = container_of(stack, "console")
    wait_for(lambda: inspect(console, "{{.State.Health.Status}}") == "healthy", 60, 0.5, what="the console healthy")
    tokens = stack.compose("run", "--rm", "console-tokens", "cat", "/tokens/console.tokens").stdout
    token = re.search(r"^admin admin ([0-9a-f]{64})$", tokens, re.M).group(1)
    assert re.search(r"^read read ([0-9a-f]{64})$", tokens, re.M)
    assert token not in stack.compose("logs", "--no-color").stdout
    r = httpx.get(f"http://127.0.0.1:{stack.console_port}/api/v1/endpoints",
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [e["description"] for e in r.json()] == ["warehouse", "CRM", "support alerts"]
    assert all(e["health"]["backlog"] == 0 for e in r.json())

    # The scenario again, as the README says: new orders arrive too.
    stack.compose("run", "--rm", "shop", timeout=120)
    wait_for(lambda: stack.compose("logs", "--no-color", "warehouse").stdout.count("orders.insert") >= 2 + 3 + 3,
             60, 0.5, what="the second run's orders")
