"""The Docker engine and the images the container tests build."""

import os
import subprocess

import pytest


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
