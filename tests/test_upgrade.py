"""Releases: a released version's install script is frozen in
extension/sql/ (what users' databases were created from), the build of
that version installs exactly it, and every frozen release has an upgrade
path (pg_webhook--A--B.sql scripts) to the version this build installs."""

import os
import re
import subprocess
from collections import deque
from pathlib import Path

from conftest import ROOT

SQL = ROOT / "extension" / "sql"
PG_CONFIG = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")


def current_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"', section, re.M).group(1)


def objects(script):
    """The script's objects, in any order (pgrx orders them by a dependency
    graph, not stably), without the generated `-- file.rs:line` comments
    (which move with any edit of the Rust code)."""
    blocks = script.split("/* <begin connected objects> */")
    return sorted(
        "\n".join(l for l in b.splitlines() if not re.fullmatch(r"-- \S+\.rs:\d+", l)).strip()
        for b in blocks
    )


def test_a_released_version_installs_exactly_its_frozen_script():
    version = current_version()
    frozen = SQL / f"pg_webhook--{version}.sql"
    # A version not frozen yet is still being developed.
    if not frozen.exists():
        return
    sharedir = subprocess.run([PG_CONFIG, "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    installed = Path(sharedir) / "extension" / f"pg_webhook--{version}.sql"
    assert objects(installed.read_text()) == objects(frozen.read_text()), (
        f"the schema changed while the version is still {version}, which is released: "
        "bump the version and add pg_webhook--{version}--<new>.sql"
    )


def test_every_released_version_has_an_upgrade_path_to_this_one():
    version = current_version()
    released = [m.group(1) for p in SQL.iterdir() if (m := re.fullmatch(r"pg_webhook--([^-]+)\.sql", p.name))]
    assert released, "no release is frozen in extension/sql"
    steps = {}
    for p in SQL.iterdir():
        if m := re.fullmatch(r"pg_webhook--([^-]+)--([^-]+)\.sql", p.name):
            steps.setdefault(m.group(1), []).append(m.group(2))
    for start in released:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in steps.get(todo.popleft(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert version in seen, f"no upgrade path from {start} to {version}"
