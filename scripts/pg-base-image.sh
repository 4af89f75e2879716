#!/usr/bin/env bash
# A local PostgreSQL 15 base image, pg-webhook/postgres-base:15-bookworm,
# for machines with no container registry: Debian 12 (debootstrap, from the
# Debian mirror this machine's apt already uses) with Debian's
# postgresql-15, and an entrypoint with the official postgres image's
# interface (deploy/postgres/base/docker-entrypoint.sh). Built once and
# cached: skipped while an image with this script's and the entrypoint's
# hash exists.
#
#   scripts/pg-base-image.sh            # prints the image's tag
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${PG_BASE_TAG:-pg-webhook/postgres-base:15-bookworm}
ENTRY=deploy/postgres/base/docker-entrypoint.sh
recipe=$(cat "$0" "$ENTRY" | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{index .Config.Labels "pg-webhook.recipe"}}' "$TAG" 2>/dev/null)" = "$recipe" ]; then
  echo "$TAG"
  exit 0
fi

old=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v debootstrap >/dev/null; then
  echo "pg-base-image: installing debootstrap" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

# The mirror apt is configured with (deb822 or one-line sources), never a
# name written here.
mirror=$( (shopt -s nullglob
           for f in /etc/apt/sources.list.d/*.sources; do
             awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u {print u; exit}' "$f"
           done
           for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
             if [ -f "$f" ]; then awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' "$f"; fi
           done) | head -n1 || true)
[ -n "$mirror" ] || { echo "pg-base-image: no Debian bookworm mirror in /etc/apt/sources*" >&2; exit 1; }

work=$(mktemp -d /var/tmp/pg-base.XXXXXX)
trap '$SUDO rm -rf "$work"' EXIT
root=$work/rootfs
echo "pg-base-image: debootstrap bookworm with postgresql-15 (a few minutes, once)" >&2
$SUDO debootstrap --variant=minbase --include=postgresql-15 bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# The package made a cluster "main" of its own; the entrypoint makes one
# in $PGDATA instead. Listen on every address of the container, as the
# official image does (its pg_hba line is added by the entrypoint).
$SUDO rm -rf "$root/etc/postgresql/15/main" "$root/var/lib/postgresql/15/main"
$SUDO sed -ri "s/^#?(listen_addresses)\s*=\s*\S+.*/\1 = '*'/" "$root/usr/share/postgresql/15/postgresql.conf.sample"
$SUDO mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data"
$SUDO install -m 0755 "$ENTRY" "$root/usr/local/bin/docker-entrypoint.sh"
$SUDO chroot "$root" chown postgres:postgres /var/lib/postgresql/data
# What a server image does not need: apt's lists and caches, documentation.
$SUDO rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/var/log/*.log

# docker import cannot set a stop signal: the root filesystem is imported
# as is, and the image's settings are a build on top of it.
$SUDO tar -C "$root" -c . | docker import - "$TAG-rootfs" >/dev/null
docker build -q -t "$TAG" - >/dev/null <<DOCKERFILE
FROM $TAG-rootfs
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
LABEL pg-webhook.recipe=$recipe
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
DOCKERFILE
docker rmi "$TAG-rootfs" >/dev/null
# The image of an older recipe, untagged now (nothing else is built on it).
if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
echo "$TAG"
