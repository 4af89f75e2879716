#!/usr/bin/env bash
# Install what pg_webhook needs on Debian 12, idempotently: each step is
# skipped when already done, so `make test` on a warm machine starts at once.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# `scripts/setup.sh docs`: what only `make docs` needs, mdBook, and nothing
# else (the book needs no PostgreSQL).
MDBOOK_VERSION=0.4.52
if [ "${1:-}" = docs ]; then
  if [ "$(mdbook --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]; then
    echo "setup: installing mdbook $MDBOOK_VERSION (a few minutes)"
    cargo install --locked mdbook --version "$MDBOOK_VERSION"
  fi
  exit 0
fi

need_pkgs=()
# tinyproxy-bin: the forward proxy of tests/webhookd/test_egress.py, the executable
# alone (the tinyproxy package would also start a system service).
# chromium: the browser of tests/browser/test_console_browser.py (Playwright drives
# it; Playwright's own browser download is never used).
# debootstrap: the Debian roots of PostgreSQL 17 and 18 (scripts/pg-root.sh).
# dpkg-dev, binutils and lintian: `make deb` and tests/deploy/test_deb.py.
for p in postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang pkg-config sudo bc openssl \
    tinyproxy-bin chromium debootstrap dpkg-dev binutils lintian; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The Debian package starts a cluster on 5432; we never use it, and leave it alone.

# The Debian roots of every version `make test` runs (PGWEBHOOK_PG_VERSIONS,
# from the Makefile's PG_VERSIONS): the build root of each version the host
# does not carry (made from its base root), the base root of the host's
# (images, package tests). Built in the background, a few minutes each and
# mostly waiting on the mirror, while cargo-pgrx and the first builds
# compile; whoever needs one later waits for it (scripts/pg-root.sh takes a
# lock per root) and sees the error if it failed.
for v in ${PGWEBHOOK_PG_VERSIONS:-}; do
  kind=build
  if [ "$v" = 15 ]; then kind=base; fi
  scripts/pg-root.sh "$v" prepare "$kind"
done

# Compose for compose.yaml's tests where a Docker engine answers and has no
# `docker compose` plugin (Debian's docker-compose is Compose v1).
if docker info >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  echo "setup: installing docker-compose"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null
fi

if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
  echo "setup: installing cargo-pgrx $PGRX_VERSION (about 10 minutes)"
  cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

if ! grep -qs "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "setup: cargo pgrx init (system PostgreSQL 15, no download)"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

# PGWEBHOOK_PG=17|18 (`make ... PG=17`): that version's Debian root
# (scripts/pg-root.sh: debootstrap once, then cached), and pgrx told about
# its PostgreSQL inside the root, where its builds run.
PG=${PGWEBHOOK_PG:-15}
if [ "$PG" != 15 ]; then
  root=$(scripts/pg-root.sh "$PG" path build)
  if ! grep -qs "pg$PG = " "$root$HOME/.pgrx/config.toml"; then
    echo "setup: cargo pgrx init in the PostgreSQL $PG root"
    scripts/pg-root.sh "$PG" run cargo pgrx init "--pg$PG" "/usr/lib/postgresql/$PG/bin/pg_config"
  fi
fi

# Whether .venv has every package a requirements file names, at the version
# it pins (a requirement added later is installed on the next run).
venv_has() {
  [ -x .venv/bin/python ] && .venv/bin/python - "$1" <<'PY'
import re, sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?", line)
    try:
        have = version(m.group(1))
    except PackageNotFoundError:
        sys.exit(1)
    if m.group(2) and have != m.group(2):
        sys.exit(1)
PY
}

# Python for the end-to-end tests: pytest, psycopg, the reference Standard
# Webhooks verifier and hypercorn (an HTTP/2 receiver).
if [ ! -x .venv/bin/pytest ]; then
  echo "setup: creating .venv for the end-to-end tests"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! venv_has tests/requirements.txt; then
  echo "setup: installing tests/requirements.txt into .venv"
  .venv/bin/pip install -q -r tests/requirements.txt
fi

# `scripts/setup.sh bench`: what only `make bench` needs — PgQ (a peer in
# B1) and matplotlib for the plots.
if [ "${1:-}" = bench ]; then
  if ! dpkg -s postgresql-15-pgq3 >/dev/null 2>&1; then
    echo "setup: installing postgresql-15-pgq3"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15-pgq3 >/dev/null
  fi
  if ! .venv/bin/python -c "import matplotlib" 2>/dev/null; then
    echo "setup: installing matplotlib for the benchmark plots"
    .venv/bin/pip install -q -r bench/requirements.txt
  fi
fi
