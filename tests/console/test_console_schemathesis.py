"""schemathesis against the console's own OpenAPI document: generated
requests to every operation (valid and invalid input, with the admin token)
for a bounded number of cases each, on a database with endpoints, events,
deliveries and attempts in it. No answer may be a 5xx, and every answer
must be one the document describes (status code and body schema)."""

import subprocess
import sys
from pathlib import Path

import pytest

from support.cluster import ROOT, q1
from support.console import ADMIN_TOKEN

pytestmark = pytest.mark.version_independent

# Beside the Python running the tests (its venv), else this checkout's.
SCHEMATHESIS = next((p for p in [Path(sys.executable).with_name("schemathesis"), ROOT / ".venv" / "bin" / "schemathesis"]
                     if p.exists()), ROOT / ".venv" / "bin" / "schemathesis")


def test_generated_requests_never_get_a_server_error(console, db, tmp_path):
    db.execute("CREATE TABLE orders (id serial PRIMARY KEY, total int)")
    db.execute("SELECT webhook.track('orders')")
    for i in range(3):
        db.execute("SELECT webhook.create_endpoint(%s, '{orders.*}')", (f"https://example.invalid/{i}",))
    db.execute("INSERT INTO orders (total) SELECT g FROM generate_series(1, 20) g")
    db.execute("SELECT webhook.route()")
    assert q1(db, "SELECT count(*) FROM webhook.deliveries") == 60
    out = subprocess.run(
        [
            str(SCHEMATHESIS), "run", f"{console.url}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "--max-examples", "100",
            "--seed", "20261201",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        # Its reports and replay cache (.schemathesis/) stay out of the tree.
        cwd=tmp_path,
    )
    print(out.stdout[-20000:], out.stderr[-5000:])
    assert out.returncode == 0, out.stdout[-20000:] + out.stderr[-5000:]
    assert "panicked" not in console.output()
