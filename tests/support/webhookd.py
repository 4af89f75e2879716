"""`webhookd run` processes against the test cluster."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.cluster import ROOT, dsn

WEBHOOKD = Path(os.environ.get("WEBHOOKD", ROOT / "target" / "release" / "webhookd"))


def require_webhookd():
    """Fails the test, saying what is missing, when there is no webhookd
    build to run: the tiers that start one need it, the SQL tier does not."""
    if not os.access(WEBHOOKD, os.X_OK):
        pytest.fail(
            f"no webhookd executable at {WEBHOOKD}: build it (`make webhookd`) or point WEBHOOKD at one",
            pytrace=False,
        )


PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def webhookd_env(**extra):
    """This process's environment for a webhookd, without any proxy setting
    or OpenTelemetry exporter setting (test traffic stays on loopback; tests
    of proxies and of span export set their own), with `extra` added: a None
    value removes that variable instead."""
    e = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS and not k.startswith("OTEL_")
    }
    for k, v in extra.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


class Webhookd:
    """`env` is added to this process's environment; a None value removes
    that variable (HTTP_PROXY=None: no proxy from the environment)."""

    def __init__(self, dbname, *args, env=None):
        self.log_path = ROOT / "target" / "test-logs" / f"webhookd-{dbname}-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        require_webhookd()
        e = webhookd_env(**{"DATABASE_URL": dsn(dbname), "WEBHOOKD_LOG": "info", **(env or {})})
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
