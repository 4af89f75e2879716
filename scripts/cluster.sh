#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for tests, the demo and benchmarks.
#
#   scripts/cluster.sh start DIR PORT [extra postgresql.conf lines...]
#   scripts/cluster.sh stop DIR
#
# PostgreSQL refuses to run as root, so when we are root every server
# command runs as the `postgres` system user (created by the Debian package);
# otherwise as ourselves. The socket lives in DIR/sock, never in the system's
# /var/run/postgresql, and the server listens on 127.0.0.1:PORT only.
#
# PGWEBHOOK_PG picks the major version (default 15, the host's); the
# server of 17 or 18 runs in its Debian root (scripts/pg-root.sh), and is
# reached from here the same way. PGBIN (a path inside that root) may
# name another build's binaries (scripts/baseline.sh). PGWEBHOOK_PG_ROOT=
# server runs the server in a root with nothing of pg_webhook's installed
# (the portable edition's tests; scripts/pg-root.sh).
set -euo pipefail

PG=${PGWEBHOOK_PG:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG/bin}
ROOT_RUN="$(dirname "$0")/pg-root.sh"
cmd=${1:?usage: cluster.sh start|stop DIR [PORT]}
dir=$(realpath -m "${2:?data directory}")

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg PROGRAM ARGS...: one of the server's programs, as its owner.
case "${PGWEBHOOK_PG_ROOT:-build}" in
  build) ROOT_KIND=() ;;
  server) ROOT_KIND=(--server) ;;
  *) echo "cluster.sh: PGWEBHOOK_PG_ROOT=$PGWEBHOOK_PG_ROOT: build or server" >&2; exit 2 ;;
esac
pg() { "$ROOT_RUN" "$PG" run "${ROOT_KIND[@]}" --postgres "$PGBIN/$1" "${@:2}"; }

case "$cmd" in
  start)
    port=${3:?port}
    shift 3
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    # Every parent must be traversable by the server's user.
    p=$(dirname "$dir")
    while [ "$p" != / ]; do
      if [ "$(id -u)" = 0 ] && [ "$(stat -c %a "$p" | cut -c3)" = 0 ]; then chmod o+x "$p"; fi
      p=$(dirname "$p")
    done
    if [ -f "$dir/data/PG_VERSION" ] && [ "$(cat "$dir/data/PG_VERSION")" != "$PG" ]; then
      echo "cluster.sh: $dir holds a PostgreSQL $(cat "$dir/data/PG_VERSION") cluster, not $PG: remove it or pick another directory" >&2
      exit 1
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      pg initdb -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
      as_owner mkdir -p "$dir/sock"
      {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir/sock'"
        echo "fsync = on"
        echo "max_connections = 200"
        echo "shared_buffers = 256MB"
        echo "log_min_messages = warning"
        for line in "$@"; do echo "$line"; done
      } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
    fi
    if ! pg pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
      # -p: the port given now wins over the one written at initdb.
      pg pg_ctl -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null
    fi
    ;;
  stop)
    if [ -f "$dir/data/PG_VERSION" ] && pg pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
      pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  restart)
    pg pg_ctl -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
