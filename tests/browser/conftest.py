"""The browser tier: the console driven by Playwright in Debian's Chromium
(/usr/bin/chromium, which scripts/setup.sh installs). It needs what the
console tier needs and that browser; without it the tests are skipped,
saying so (required under CI=true)."""

import pytest

from support.webhookd import require_webhookd


@pytest.fixture(autouse=True)
def webhookd_build():
    require_webhookd()
