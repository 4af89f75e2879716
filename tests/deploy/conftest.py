"""The deploy tier: what ships, run the way it is deployed. Its files need
different things, each said where it is needed:

- test_container.py, test_compose.py, test_faults.py: a Docker engine
  (skipped, saying so, when `docker info` does not answer; required under
  CI=true) and the images built from the release build of webhookd and the
  extension package (`make install package`);
- test_deb.py: sudo, the version's clean Debian root (scripts/pg-root.sh)
  and the release build and package scripts/deb.sh packs;
- test_kubernetes.py: nothing but kubernetes-validate (tests/requirements.txt)."""

import os
import subprocess

import pytest

from support.cluster import PG_MAJOR, ROOT
from support.docker import IMAGE_VERSION
from support.webhookd import WEBHOOKD, require_webhookd


@pytest.fixture(scope="session")
def images():
    """pg-webhook/webhookd:test and pg-webhook/postgres:test-pg<N> (the
    version under test), built by scripts/image.sh from this checkout's
    release build and extension package (`make package`)."""
    require_webhookd()
    out = subprocess.run(
        [str(ROOT / "scripts" / "image.sh"), "all"],
        env=dict(
            os.environ,
            IMAGE_TAG=f"pg-webhook/webhookd:{IMAGE_VERSION}",
            PG_IMAGE_TAG=f"pg-webhook/postgres:{IMAGE_VERSION}-pg{PG_MAJOR}",
            WEBHOOKD=str(WEBHOOKD),
        ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return {"webhookd": f"pg-webhook/webhookd:{IMAGE_VERSION}", "postgres": f"pg-webhook/postgres:{IMAGE_VERSION}-pg{PG_MAJOR}"}
