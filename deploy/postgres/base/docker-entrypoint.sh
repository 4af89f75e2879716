#!/bin/bash
# The entrypoint of pg_webhook's local PostgreSQL 15 base image
# (scripts/pg-base-image.sh), for machines that cannot pull the official
# postgres:15-bookworm image. It keeps that image's interface, so
# deploy/postgres/Containerfile and compose.yaml work on either base:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres), POSTGRES_DB (default: the user),
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#   PGDATA, and /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh run once,
#   in name order, when the data directory is first created.
# It runs the server as the postgres user and execs it, so signals reach it
# directly (STOPSIGNAL SIGINT: a fast shutdown).
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

run_initdb_d() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then echo "entrypoint: running $f"; "$f"
        else echo "entrypoint: sourcing $f"; . "$f"; fi ;;
      *.sql) echo "entrypoint: running $f"; psql_init -f "$f" ;;
      *.sql.gz) echo "entrypoint: running $f"; gunzip -c "$f" | psql_init ;;
      *) if [ -e "$f" ]; then echo "entrypoint: ignoring $f"; fi ;;
    esac
  done
}

psql_init() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname "$POSTGRES_DB" "$@"
}

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  export POSTGRES_USER POSTGRES_DB
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    echo "entrypoint: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
    echo "entrypoint: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust, for tests only)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image.
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
  # A server on the unix socket only while the init scripts run, so nothing
  # connects to a half-initialized database.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  export PGPASSWORD="${POSTGRES_PASSWORD:-}"
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  run_initdb_d
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "entrypoint: initialized; starting PostgreSQL"
fi

exec "$@"
