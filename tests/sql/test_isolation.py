"""The isolation specs (tests/sql/isolation/specs/): the properties that
are about interleaved sessions, run step by step by PostgreSQL's
isolationtester (pg_isolation_regress) against this suite's cluster, one
fresh database per spec, so each interleaving is the same on every run
instead of timed. Each spec's output must match
tests/sql/isolation/expected/<spec>.out; on a difference the failure shows
the diff.

A new spec: write specs/<name>.spec, run this test once (it fails, showing
the whole output), read that output through, and commit it as
expected/<name>.out."""

import subprocess
from pathlib import Path

import pytest

from support.cluster import PG_MAJOR, PORT, ROOT, pg_config, pg_root

ISOLATION = Path(__file__).resolve().parent / "isolation"
SPECS = sorted(p.stem for p in (ISOLATION / "specs").glob("*.spec"))


@pytest.fixture(scope="module")
def isolation_regress():
    """pg_isolation_regress of the version under test, as its root sees it
    (PostgreSQL's client package ships it beside isolationtester)."""
    inside = Path(pg_config("--pkglibdir")) / "pgxs" / "src" / "test" / "isolation" / "pg_isolation_regress"
    if not (pg_root() / inside.relative_to("/")).exists():
        pytest.skip(f"PostgreSQL {PG_MAJOR}'s root has no {inside} (Debian's postgresql-client-{PG_MAJOR} ships it)")
    return inside


def test_every_spec_has_its_expected_output():
    assert SPECS, f"no spec in {ISOLATION / 'specs'}"
    outs = sorted(p.stem for p in (ISOLATION / "expected").glob("*.out"))
    assert outs == SPECS, f"specs {SPECS}, expected outputs {outs}"


@pytest.mark.parametrize("spec", SPECS)
def test_isolation_spec(isolation_regress, dbname, spec, tmp_path):
    out = tmp_path / "isolation"
    out.mkdir()
    run = subprocess.run(
        [str(ROOT / "scripts" / "pg-root.sh"), PG_MAJOR, "run", str(isolation_regress), "--use-existing",
         "--host=127.0.0.1", f"--port={PORT}", "--user=postgres", f"--dbname={dbname}",
         f"--inputdir={ISOLATION}", f"--outputdir={out}", spec],
        capture_output=True, text=True, timeout=300,
    )
    if run.returncode != 0:
        diffs = out / "regression.diffs"
        result = out / "results" / f"{spec}.out"
        shown = (diffs if diffs.exists() and diffs.stat().st_size else result)
        pytest.fail(
            f"pg_isolation_regress {spec}: exit {run.returncode}\n{run.stdout}{run.stderr}\n"
            f"{shown}:\n{shown.read_text() if shown.exists() else '(none)'}",
            pytrace=False,
        )
