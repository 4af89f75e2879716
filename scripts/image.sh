#!/usr/bin/env bash
# `make image`: the webhookd container image (deploy/webhookd/Containerfile)
# from the release binary, with no base image: there is no registry to pull
# one from, and webhookd needs only its shared libraries.
#
#   scripts/image.sh                  # pg-webhook/webhookd:<version>
#   IMAGE_TAG=x:y WEBHOOKD=path scripts/image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${WEBHOOKD:-target/release/webhookd}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
TAG=${IMAGE_TAG:-pg-webhook/webhookd:$VERSION}
SOURCE=${IMAGE_SOURCE:-pg_webhook}
[ -x "$BIN" ] || { echo "image: $BIN is missing: run make webhookd first" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/etc"
cp "$BIN" "$root/webhookd"
# Every library the binary links, at the path its loader looks for it
# (ldd prints "name => /path (addr)" and the loader as "/path (addr)").
ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo "webhookd:x:65532:65532:webhookd:/nonexistent:/usr/sbin/nologin" >"$root/etc/passwd"
echo "webhookd:x:65532:" >"$root/etc/group"
cp deploy/webhookd/Containerfile "$ctx/Containerfile"
if ! docker build -q -f "$ctx/Containerfile" --build-arg VERSION="$VERSION" --build-arg SOURCE="$SOURCE" \
    -t "$TAG" "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  exit 1
fi
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "image: $TAG, $((size / 1024 / 1024)) MB"
