#!/usr/bin/env bash
# `make image`: the container images, built from what this machine has (no
# registry to pull from):
#   pg-webhook/webhookd:<version>   deploy/webhookd/Containerfile, FROM
#       scratch: the release binary and the shared libraries it links;
#   pg-webhook/postgres:<version>-pg<N>   deploy/postgres/Containerfile:
#       the extension (`cargo pgrx package` output) on a PostgreSQL N base
#       (N = PGWEBHOOK_PG, default 15), the official postgres:N where that
#       image is present, else the local Debian one of
#       scripts/pg-base-image.sh (built once).
#
#   scripts/image.sh [webhookd|postgres|all]          # default: all
#   IMAGE_TAG=x:y WEBHOOKD=path scripts/image.sh webhookd
#   PGWEBHOOK_PG=17 PG_IMAGE_TAG=x:y PG_PACKAGE=dir PG_BASE_IMAGE=image scripts/image.sh postgres
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${1:-all}
PG=${PGWEBHOOK_PG:-15}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
SOURCE=${IMAGE_SOURCE:-pg_webhook}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

build() { # build <tag> <context dir> [build args...]
  local tag=$1 dir=$2
  shift 2
  if ! docker build -q -f "$dir/Containerfile" --build-arg VERSION="$VERSION" --build-arg SOURCE="$SOURCE" "$@" \
      -t "$tag" "$dir" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    exit 1
  fi
  echo "image: $tag, $(($(docker image inspect -f '{{.Size}}' "$tag") / 1024 / 1024)) MB"
}

webhookd_image() {
  local bin=${WEBHOOKD:-target/release/webhookd} dir=$ctx/webhookd
  [ -x "$bin" ] || { echo "image: $bin is missing: run make webhookd first" >&2; exit 1; }
  mkdir -p "$dir/rootfs/etc"
  cp "$bin" "$dir/rootfs/webhookd"
  # Every library the binary links, at the path its loader looks for it
  # (ldd prints "name => /path (addr)" and the loader as "/path (addr)").
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
    mkdir -p "$dir/rootfs$(dirname "$lib")"
    cp -L "$lib" "$dir/rootfs$lib"
  done
  echo "webhookd:x:65532:65532:webhookd:/nonexistent:/usr/sbin/nologin" >"$dir/rootfs/etc/passwd"
  echo "webhookd:x:65532:" >"$dir/rootfs/etc/group"
  cp deploy/webhookd/Containerfile "$dir/Containerfile"
  build "${IMAGE_TAG:-pg-webhook/webhookd:$VERSION}" "$dir"
}

postgres_image() {
  local pkg=${PG_PACKAGE:-target/pg$PG/release/pg_webhook-pg$PG} dir=$ctx/postgres base
  [ -f "$pkg/usr/share/postgresql/$PG/extension/pg_webhook.control" ] ||
    { echo "image: no extension package in $pkg: run make package PG=$PG first" >&2; exit 1; }
  base=${PG_BASE_IMAGE:-}
  if [ -z "$base" ]; then
    # Never pulled: an image is used only if this machine already has it.
    # The official image is Debian-based too, with the same paths.
    if docker image inspect "postgres:$PG" >/dev/null 2>&1; then
      base=postgres:$PG
    else
      base=$(scripts/pg-base-image.sh "$PG")
    fi
  fi
  mkdir -p "$dir"
  cp -r "$pkg/usr" "$dir/usr"
  cp deploy/postgres/Containerfile "$dir/Containerfile"
  build "${PG_IMAGE_TAG:-pg-webhook/postgres:$VERSION-pg$PG}" "$dir" --build-arg BASE="$base" --build-arg PG_MAJOR="$PG"
}

case "$WHAT" in
  webhookd) webhookd_image ;;
  postgres) postgres_image ;;
  all) webhookd_image; postgres_image ;;
  *) echo "usage: scripts/image.sh [webhookd|postgres|all]" >&2; exit 2 ;;
esac
