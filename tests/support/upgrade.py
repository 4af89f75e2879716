"""Releases and upgrades: the frozen install scripts in extension/sql/,
the version this build installs, and the releases a database can be
upgraded from."""

import os
import re
import shutil
import subprocess

from support.cluster import ROOT, pg_dir

SQL = ROOT / "extension" / "sql"


def current_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"', section, re.M).group(1)


def released_versions():
    """Every frozen release, oldest first."""
    found = [m.group(1) for p in SQL.iterdir() if (m := re.fullmatch(r"pg_webhook--([^-]+)\.sql", p.name))]
    return sorted(found, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))


# The releases a database can be upgraded from: every frozen one but the
# version this build installs.
UPGRADABLE = [v for v in released_versions() if v != current_version()]


def install_released_scripts():
    """Installs the frozen install scripts of earlier releases beside the
    build's own scripts. `make install` (cargo pgrx install) copies only the
    upgrade scripts and this version's generated script; a user's system has
    the old ones from the packages it was installed from. Idempotent and
    atomic (a rename), so suites running side by side never see half a file;
    through sudo when this user cannot write the directory."""
    dest = pg_dir("--sharedir") / "extension"
    for version in UPGRADABLE:
        src = SQL / f"pg_webhook--{version}.sql"
        target = dest / src.name
        if target.exists() and target.read_bytes() == src.read_bytes():
            continue
        tmp = dest / f".{src.name}.{os.getpid()}"
        if os.access(dest, os.W_OK):
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        else:
            subprocess.run(["sudo", "install", "-m", "0644", str(src), str(tmp)], check=True)
            subprocess.run(["sudo", "mv", "-f", str(tmp), str(target)], check=True)
    return UPGRADABLE
