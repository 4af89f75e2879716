#!/usr/bin/env bash
# PostgreSQL of every supported major version on this Debian 12 machine.
# Debian 12 carries PostgreSQL 15 only; 17 and 18 come from Debian 13
# (trixie) and unstable (sid), whose programs need a newer C library than
# the host's, so each lives in a Debian root of its own suite
# (debootstrap, from the mirror this machine's apt already uses), run with
# chroot and never mixed into the host's packages.
#
#   scripts/pg-root.sh N path [base|build|server]  # prints the root (built once, cached)
#   scripts/pg-root.sh N ready [base|build|server] # exit 0 when it is built
#   scripts/pg-root.sh N prepare [base|build]      # build it in the background
#   scripts/pg-root.sh N run [--server] [--postgres] CMD [ARG...]
#
# base:  Debian's postgresql-N alone: the base of the container image
#        (scripts/pg-base-image.sh) and the clean root the packages are
#        installed into by their test.
# build: base plus what the extension builds and tests with (server
#        headers, clang for bindgen, a C compiler, sudo for
#        `cargo pgrx test --runas`), PgBouncer, and PgQ (a peer in the
#        benchmarks). For 15 it is the host.
# server: a copy of base that runs a server with nothing of pg_webhook's
#        installed (the portable edition's tests: `run --server`); a copy,
#        as a run makes the mount points of the host paths it binds, and
#        base stays as debootstrap made it.
# run:   CMD inside the build root (for 15: on the host; --server: the
#        server root, for every version), as root, or as
#        the postgres user with --postgres (PostgreSQL refuses root). The
#        command sees the host's /tmp, this checkout, ~/.cargo and
#        ~/.rustup at their own paths (a private mount namespace: the bind
#        mounts vanish with its last process) and starts in the current
#        directory; a server it starts stays in that namespace and is
#        reached from the host over 127.0.0.1 or a socket in those paths.
#
# The root's postgres user has the host's uid and gid, so a data directory
# made on either side belongs to the same user on both. Roots are cached in
# $PGWEBHOOK_ROOTS (default /var/tmp/pg-webhook/roots), outside any
# checkout, so a clean clone reuses them, and built under a temporary name
# first, so an interrupted build never looks finished.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
ROOTS=${PGWEBHOOK_ROOTS:-/var/tmp/pg-webhook/roots}
HOST_MAJOR=15

usage() { echo "usage: scripts/pg-root.sh N path|ready|prepare [base|build|server] | N run [--server] [--postgres] CMD..." >&2; exit 2; }
N=${1:-}
[ -n "$N" ] || usage
# The supported versions and the Debian suite that carries each: the one
# list (the Makefile's PG_VERSIONS names the same three).
case "$N" in
  15) SUITE=bookworm ;;
  17) SUITE=trixie ;;
  18) SUITE=sid ;;
  *) echo "pg-root: no Debian suite this machine reaches carries PostgreSQL $N (supported: 15, 17, 18)" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Held by whoever builds this version's roots (root_path).
LOCK=$ROOTS/.lock-$SUITE-pg$N

# The mirror apt is configured with (deb822 or one-line sources), never a
# name written here. Every suite is served from the same mirror.
mirror() {
  (shopt -s nullglob
   for f in /etc/apt/sources.list.d/*.sources; do
     awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u {print u; exit}' "$f"
   done
   for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
     if [ -f "$f" ]; then awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' "$f"; fi
   done) | head -n1 || true
}

# in_root ROOT USER CMD...: CMD in ROOT as USER (root or postgres), with the
# host paths above bound in. Re-executes this script inside a private mount
# namespace (unshare), so nothing stays mounted on the host.
in_root() {
  if [ "${PGWEBHOOK_IN_NS:-}" != 1 ]; then
    exec $SUDO env PGWEBHOOK_IN_NS=1 unshare --mount --propagation private "$0" "$N" --in-ns "$@"
  fi
  local root=$1 user=$2
  shift 2
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  local d
  for d in /tmp "$REPO" "$HOME/.cargo" "$HOME/.rustup" ${PGWEBHOOK_ROOT_BINDS:-}; do
    [ -d "$d" ] || continue
    mkdir -p "$root$d"
    mount --bind "$d" "$root$d"
  done
  # The host's names (sudo inside looks up this host's name).
  mount --bind -o ro /etc/hosts "$root/etc/hosts"
  local cwd=/
  case "$PWD/" in /tmp/* | "$REPO"/*) cwd=$PWD ;; esac
  local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  if [ "$user" = postgres ]; then
    exec chroot "$root" env -u PGWEBHOOK_IN_NS -C "$cwd" runuser -u postgres -- env HOME=/var/lib/postgresql PATH="$path" "$@"
  fi
  exec chroot "$root" env -u PGWEBHOOK_IN_NS -C "$cwd" HOME="$HOME" PATH="$HOME/.cargo/bin:$path" CARGO_HOME="$HOME/.cargo" \
    RUSTUP_HOME="$HOME/.rustup" "$@"
}

# remove_tree DIR: a root (or what an interrupted build left) removed. What
# an interrupted debootstrap left mounted in it (/proc) is unmounted first,
# and rm never crosses into another file system. (make_base and make_build
# then find no temporary directory to remove.)
remove_tree() {
  [ -e "$1" ] || return 0
  local m
  for m in $(findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r); do
    $SUDO umount -l "$m"
  done
  $SUDO rm -rf --one-file-system "$1"
}

# chroot_setup ROOT CMD...: a step of building a root (no host paths bound).
chroot_setup() {
  local root=$1
  shift
  $SUDO unshare --mount --propagation private sh -c 'r=$1; shift; mount -t proc proc "$r/proc" && exec chroot "$r" "$@"' \
    sh "$root" env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

make_base() {
  local dest=$1 tmp=$1.tmp m
  m=$(mirror)
  [ -n "$m" ] || { echo "pg-root: no Debian bookworm mirror in /etc/apt/sources*" >&2; exit 1; }
  if ! command -v debootstrap >/dev/null; then
    echo "pg-root: installing debootstrap" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
  fi
  $SUDO rm -rf "$tmp"
  $SUDO mkdir -p "$tmp"
  echo "pg-root: debootstrap $SUITE with postgresql-$N (a few minutes, once)" >&2
  if ! $SUDO debootstrap --variant=minbase --include="postgresql-$N,ca-certificates" "$SUITE" "$tmp" "$m" \
      >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    exit 1
  fi
  # No service starts inside the root when a package is installed later.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$tmp/usr/sbin/policy-rc.d" >/dev/null
  $SUDO chmod 0755 "$tmp/usr/sbin/policy-rc.d"
  # The mirror may be a snapshot older than a suite's Release file allows
  # (sid's is valid for a week): apt inside the root accepts it as
  # debootstrap did, signatures still checked.
  echo 'Acquire::Check-Valid-Until "false";' | $SUDO tee "$tmp/etc/apt/apt.conf.d/99pg-webhook" >/dev/null
  # The package made a cluster "main" of its own; nothing uses it.
  $SUDO rm -rf "$tmp/etc/postgresql/$N/main" "$tmp/var/lib/postgresql/$N/main"
  # The root's postgres user and group get the host's ids (see the top).
  local uid gid ouid ogid
  uid=$(id -u postgres) gid=$(id -g postgres)
  ouid=$($SUDO chroot "$tmp" id -u postgres) ogid=$($SUDO chroot "$tmp" id -g postgres)
  if [ "$ouid:$ogid" != "$uid:$gid" ]; then
    if $SUDO chroot "$tmp" getent passwd "$uid" | grep -qv '^postgres:' || $SUDO chroot "$tmp" getent group "$gid" | grep -qv '^postgres:'; then
      echo "pg-root: the host's postgres ids ($uid:$gid) are taken in the $SUITE root" >&2
      exit 1
    fi
    chroot_setup "$tmp" groupmod -g "$gid" postgres
    chroot_setup "$tmp" usermod -u "$uid" -g "$gid" postgres
    chroot_setup "$tmp" find / -xdev \( -uid "$ouid" -o -gid "$ogid" \) -exec chown -h postgres:postgres {} +
  fi
  $SUDO touch "$tmp/.pg-webhook-root"
  $SUDO rm -f "$tmp.log"
  $SUDO rm -rf "$dest"
  $SUDO mv "$tmp" "$dest"
}

make_build() {
  local base=$1 dest=$2 tmp=$2.tmp
  $SUDO rm -rf "$tmp"
  $SUDO cp -a "$base" "$tmp"
  echo "pg-root: adding the build tools and PgBouncer to the $SUITE root (once)" >&2
  chroot_setup "$tmp" apt-get update -qq
  if ! chroot_setup "$tmp" apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$N" \
      build-essential libclang-dev clang pkg-config sudo pgbouncer "postgresql-$N-pgq3" >"$tmp.log" 2>&1; then
    tail -n 30 "$tmp.log" >&2
    exit 1
  fi
  $SUDO rm -f "$tmp.log"
  $SUDO rm -rf "$dest"
  $SUDO mv "$tmp" "$dest"
}

# A root's name carries the hash of the steps that made it (the bodies of
# make_base and make_build, comments aside), so a checkout whose steps
# differ builds roots of its own beside, never over, the ones another
# checkout is using; roots of older steps are removed after a day unused.
base_recipe=$(declare -f make_base | sha256sum | cut -c1-12)
build_recipe=$( (echo "$base_recipe"; declare -f make_build) | sha256sum | cut -c1-12)

BASE=$ROOTS/$SUITE-pg$N-base-$base_recipe
BUILD=$ROOTS/$SUITE-pg$N-build-$build_recipe
SERVER=$ROOTS/$SUITE-pg$N-server-$base_recipe

ready() { # ready base|build|server: the root is built (never builds it)
  case "$1" in
    build) [ "$N" = "$HOST_MAJOR" ] || [ -f "$BUILD/.pg-webhook-root" ] ;;
    server) [ -f "$SERVER/.pg-webhook-root" ] ;;
    *) [ -f "$BASE/.pg-webhook-root" ] ;;
  esac
}

lock_file() { # the lock's file, made so any user may take it
  $SUDO mkdir -p "$ROOTS"
  $SUDO touch "$LOCK"
  $SUDO chmod a+rw "$LOCK"
}

root_path() { # root_path base|build|server: built if missing
  local kind=$1 base=$BASE build=$BUILD
  if [ "$kind" = build ] && [ "$N" = "$HOST_MAJOR" ]; then echo /; return; fi
  if ! ready base || ! ready "$kind"; then
    # One builder per root at a time (setup.sh starts the builds in the
    # background; a later caller waits here, then finds the root made).
    lock_file
    exec 9<>"$LOCK"
    flock 9
  fi
  if [ ! -f "$base/.pg-webhook-root" ]; then
    remove_tree "$base.tmp"
    make_base "$base"
    forget_old "$SUITE-pg$N-base-" "$base"
  fi
  if [ "$kind" = build ] && [ ! -f "$build/.pg-webhook-root" ]; then
    remove_tree "$build.tmp"
    make_build "$base" "$build"
    forget_old "$SUITE-pg$N-build-" "$build"
  fi
  if [ "$kind" = server ] && [ ! -f "$SERVER/.pg-webhook-root" ]; then
    remove_tree "$SERVER.tmp"
    $SUDO cp -a "$base" "$SERVER.tmp"
    $SUDO mv "$SERVER.tmp" "$SERVER"
    forget_old "$SUITE-pg$N-server-" "$SERVER"
  fi
  exec 9>&- # the lock, if taken: never inherited by the command run
  local r=$base
  case "$kind" in build) r=$build ;; server) r=$SERVER ;; esac
  $SUDO touch "$r/.pg-webhook-root"
  echo "$r"
}

forget_old() { # forget_old PREFIX KEEP: roots of other steps, unused for a day
  local d
  for d in "$ROOTS/$1"*; do
    [ -d "$d" ] && [ "$d" != "$2" ] || continue
    # The marker is touched at each use; a root being built may have none.
    local mark=$d/.pg-webhook-root
    [ -f "$mark" ] || mark=$d
    if [ -n "$(find "$mark" -maxdepth 0 -mtime +0)" ]; then remove_tree "$d"; fi
  done
}

cmd=${2:-}
case "$cmd" in
  path)
    case "${3:-build}" in base | build | server) root_path "${3:-build}" ;; *) usage ;; esac
    ;;
  ready)
    case "${3:-build}" in base | build | server) ready "${3:-build}" ;; *) usage ;; esac
    ;;
  prepare) # build the root in the background unless built or being built
    kind=${3:-build}
    case "$kind" in base | build) ;; *) usage ;; esac
    ready "$kind" && exit 0
    log=$ROOTS/.log-$SUITE-pg$N
    lock_file
    $SUDO touch "$log"
    flock -n "$LOCK" true || exit 0
    echo "pg-root: building the PostgreSQL $N $kind root in the background (log: $log)" >&2
    ("$0" "$N" path "$kind" 2>&1 | $SUDO tee -a "$log" >/dev/null) </dev/null >/dev/null 2>&1 &
    ;;
  run)
    shift 2
    user=root kind=build
    if [ "${1:-}" = --server ]; then kind=server; shift; fi
    if [ "${1:-}" = --postgres ]; then user=postgres; shift; fi
    [ $# -gt 0 ] || usage
    if [ "$N" = "$HOST_MAJOR" ] && [ "$kind" = build ]; then
      if [ "$user" = postgres ] && [ "$(id -u)" = 0 ]; then exec runuser -u postgres -- "$@"; fi
      exec "$@"
    fi
    in_root "$(root_path "$kind")" "$user" "$@"
    ;;
  --in-ns)
    shift 2
    in_root "$@"
    ;;
  *) usage ;;
esac
