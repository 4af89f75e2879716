#!/usr/bin/env bash
# A local PostgreSQL base image, pg-webhook/postgres-base:N (N = 15, 17 or
# 18), for machines with no container registry: the base root of
# scripts/pg-root.sh (Debian's postgresql-N on the Debian suite that
# carries it, by debootstrap from the mirror this machine's apt already
# uses) and an entrypoint with the official postgres image's interface
# (deploy/postgres/base/docker-entrypoint.sh). Built once and cached:
# skipped while an image with this recipe's hash exists.
#
#   scripts/pg-base-image.sh [N]        # prints the image's tag (default N: 15)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-15}
TAG=${PG_BASE_TAG:-pg-webhook/postgres-base:$N}
ENTRY=deploy/postgres/base/docker-entrypoint.sh
# The base root's name carries the hash of the steps that made it.
base=$(scripts/pg-root.sh "$N" path base)
recipe=$( (cat "$0" "$ENTRY"; echo "$base") | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{index .Config.Labels "pg-webhook.recipe"}}' "$TAG" 2>/dev/null)" = "$recipe" ]; then
  echo "$TAG"
  exit 0
fi

old=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
work=$(mktemp -d /var/tmp/pg-base.XXXXXX)
trap '$SUDO rm -rf "$work"' EXIT
root=$work/rootfs
$SUDO cp -a "$base" "$root"
$SUDO rm -f "$root/.pg-webhook-root"
# The entrypoint makes the cluster in $PGDATA. Listen on every address of
# the container, as the official image does (its pg_hba line is added by
# the entrypoint).
$SUDO sed -ri "s/^#?(listen_addresses)\s*=\s*\S+.*/\1 = '*'/" "$root/usr/share/postgresql/$N/postgresql.conf.sample"
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
ENV PATH=/usr/lib/postgresql/$N/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
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
