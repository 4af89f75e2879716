"""The console tier: `webhookd console` over HTTP (its API, its sessions
and security, schemathesis against its OpenAPI document). It needs what
the webhookd tier needs (the console is a webhookd command); the browser
tier drives the same console in Chromium."""

import pytest

from support.webhookd import require_webhookd


@pytest.fixture(autouse=True)
def webhookd_build():
    require_webhookd()
