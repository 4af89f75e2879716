"""The webhookd container image (`make image`): delivers from a throwaway
cluster to a receiver, reports healthy, runs as a non-root user on a
read-only root filesystem, and `docker stop` drains within Docker's default
10 s. Containers use the host's network and reach only loopback (the test
cluster and receivers on 127.0.0.1).

Skipped, saying why, where no Docker engine answers; required when CI=true."""

import json
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import SECRET, dsn, free_port, q1, wait_for
from support.docker import docker, inspect, needs_docker

pytestmark = [needs_docker, pytest.mark.version_independent]


@pytest.fixture(scope="module")
def image(images):
    return images["webhookd"]


@pytest.fixture
def container(image, dbname):
    names = []

    def start(*env, health_interval="1s"):
        name = f"webhookd-test-{uuid.uuid4().hex[:8]}"
        names.append(name)
        args = ["run", "-d", "--name", name, "--network", "host", "--read-only",
                "--health-interval", health_interval, "--health-start-period", "0s",
                "-e", f"DATABASE_URL={dsn(dbname)}", "-e", "WEBHOOKD_ALLOW_PRIVATE_TARGETS=true"]
        for e in env:
            args += ["-e", e]
        docker(*args, image)
        return name

    yield start
    for n in names:
        logs = docker("logs", n, check=False)
        print(f"--- {n}\n{logs.stdout}{logs.stderr}")
        docker("rm", "-f", n, check=False)


def orders(db, url, **kw):
    db.execute("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text)")
    db.execute("SELECT webhook.track('orders')")
    args = "".join(f", {k} => %s" for k in kw)
    return q1(db, f"SELECT webhook.create_endpoint(%s, '{{*}}', %s{args})", url, SECRET, *kw.values())


def test_the_image_delivers_signed_webhooks_as_a_non_root_user_on_a_read_only_filesystem(db, receiver, container, image):
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    assert size < 30 * 1024 * 1024, size
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", image).stdout)
    for key in ["source", "version", "licenses"]:
        assert labels.get(f"org.opencontainers.image.{key}"), labels
    r = receiver()
    orders(db, r.url)
    health = free_port()
    name = container(f"WEBHOOKD_METRICS_ADDR=127.0.0.1:{health}", "WEBHOOKD_LOG_FORMAT=json")
    db.execute("INSERT INTO orders (customer) SELECT 'c' || g FROM generate_series(1, 25) g")
    wait_for(lambda: r.count() >= 25, 30, what="25 deliveries from the container")
    for req in r.requests:
        Webhook(SECRET).verify(req["body"], req["headers"])
    wait_for(lambda: inspect(name, "{{.State.Health.Status}}") == "healthy", 30, what="a healthy container")
    # Not root, and nothing written: the root filesystem is read-only.
    assert inspect(name, "{{.Config.User}}") == "65532:65532"
    assert inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    pid = inspect(name, "{{.State.Pid}}")
    uid_line = next(l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65532"] * 4, uid_line
    # Logs on stdout, one JSON object a line.
    lines = [l for l in docker("logs", name).stdout.splitlines() if l.strip()]
    assert lines and all(json.loads(l) for l in lines)
    assert any(json.loads(l)["fields"].get("message") == "webhookd running" for l in lines), lines


def test_docker_stop_drains_in_flight_deliveries_and_gives_back_leases_in_time(db, receiver, container):
    # Slow requests: some are in flight when the container is stopped.
    r = receiver(lambda n, req: (204, {}, b"", 1.5))
    orders(db, r.url, max_in_flight=4)
    name = container()
    db.execute("INSERT INTO orders (customer) SELECT 'c' || g FROM generate_series(1, 40) g")
    wait_for(lambda: r.count() >= 4, 30, what="requests in flight")
    started = time.monotonic()
    docker("stop", name)  # Docker's default: SIGTERM, then SIGKILL after 10 s
    took = time.monotonic() - started
    assert inspect(name, "{{.State.ExitCode}}") == "0"
    assert took < 10, took
    # Every request that was in flight finished and was recorded; nothing
    # is left leased.
    assert q1(db, "SELECT count(*) FROM webhook.deliveries WHERE in_flight") == 0
    assert q1(db, "SELECT count(*) FROM webhook.delivery WHERE status = 'pending' AND leased_by IS NOT NULL") == 0
    sent = r.count()
    assert q1(db, "SELECT count(*) FROM webhook.attempts WHERE http_status = 204") == sent
    print(f"docker stop took {took:.1f} s with {sent} of 40 delivered")
