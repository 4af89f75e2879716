#!/usr/bin/env bash
# The shop demo: a throwaway cluster, the shop schema, webhookd and three
# verifying receivers; then a short scenario, and the health summary.
# Stops everything it started (and nothing else) on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

# Below the kernel's ephemeral port range (32768+), so an outgoing
# connection can never be holding one of our listening ports.
BASE=${DEMO_PORT_BASE:-25450}
DIR=${DEMO_DIR:-target/demo-cluster-pg${PGWEBHOOK_PG:-15}}
PACE=${DEMO_PACE:-0.6}
WEBHOOKD=${WEBHOOKD:-target/release/webhookd}
export PGHOST=127.0.0.1 PGPORT=$BASE PGUSER=postgres
LOGS=$DIR/logs
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/cluster.sh stop "$DIR" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { psql -qXtA -v ON_ERROR_STOP=1 -d shop "$@"; }

say "Starting a throwaway PostgreSQL ${PGWEBHOOK_PG:-15} on 127.0.0.1:$BASE ($DIR)"
scripts/cluster.sh start "$DIR" "$BASE"
mkdir -p "$LOGS"
psql -qX -d postgres -c "DROP DATABASE IF EXISTS shop WITH (FORCE)" -c "CREATE DATABASE shop"
psql -qX -d shop -c "CREATE EXTENSION pg_webhook" -c "ALTER DATABASE shop SET webhook.allow_http = on"
sql -f sql/demo/shop.sql >/dev/null

say "Endpoints: warehouse (ordered, fails its first 2 attempts), CRM, support"
sql <<SQL >/dev/null
SELECT webhook.create_endpoint('http://127.0.0.1:$((BASE + 1))/orders', '{orders.insert}',
                               description => 'warehouse', ordered => true);
SELECT webhook.create_endpoint('http://127.0.0.1:$((BASE + 2))/crm', '{reviews.insert,loyalty.*,products.back_in_stock}',
                               description => 'CRM');
SELECT webhook.create_endpoint('http://127.0.0.1:$((BASE + 3))/alerts', '{support.low_rating.*}',
                               description => 'support alerts');
SQL
sql -c "SELECT id, description, url, array_to_string(event_types, ', ') FROM webhook.endpoint ORDER BY id" -F ' | '

secret() { sql -c "SELECT webhook.endpoint_secret($1)"; }
"$WEBHOOKD" listen --addr "127.0.0.1:$((BASE + 1))" --secret "$(secret 1)" --name warehouse --fail-first 2 &
pids+=($!)
"$WEBHOOKD" listen --addr "127.0.0.1:$((BASE + 2))" --secret "$(secret 2)" --name crm &
pids+=($!)
"$WEBHOOKD" listen --addr "127.0.0.1:$((BASE + 3))" --secret "$(secret 3)" --name support &
pids+=($!)
WEBHOOKD_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:$BASE/shop" \
  "$WEBHOOKD" run --allow-private-targets --retry-schedule 1s,2s,5s,10s >"$LOGS/webhookd.log" 2>&1 &
pids+=($!)
sleep 0.5

# The scenario (shared with compose.yaml's `shop` service).
psql -qX -v ON_ERROR_STOP=1 -v pace="$PACE" -d shop -f sql/demo/scenario.sql 2>&1 | sed 's/^== \(.*\)/\n\x1b[1m== \1\x1b[0m/'

say "Waiting for every delivery (the warehouse retries its first two)"
for _ in $(seq 1 150); do
  left=$(sql -c "SELECT count(*) FROM webhook.deliveries WHERE status <> 'succeeded'")
  [ "$left" = 0 ] && break
  sleep 0.2
done
sleep 0.3

say "Endpoint health"
sql -P footer=off -F ' | ' -c "SELECT h.endpoint_id, e.description, h.backlog, h.dead, (SELECT count(*) FROM webhook.attempts a WHERE a.endpoint_id = h.endpoint_id) AS attempts, to_char(h.last_success_at, 'HH24:MI:SS') AS last_success FROM webhook.endpoint_health h JOIN webhook.endpoint e ON e.id = h.endpoint_id ORDER BY 1"
say "webhookd status"
"$WEBHOOKD" status --database-url "postgres://postgres@127.0.0.1:$BASE/shop"
if [ "$left" != 0 ]; then
  echo "demo: $left deliveries did not succeed; see $LOGS/webhookd.log" >&2
  exit 1
fi
