#!/usr/bin/env bash
# Delivery throughput (drain of a backlog) and commit → receipt latency at
# fixed open-loop rates: a real webhookd between PostgreSQL and pgwh-bench's
# verifying receiver, all on this machine.
#
#   N=100000 RATES="500 1000 2000 4000" SECS=10 scripts/bench_delivery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RATES=${RATES:-"500 1000 2000 4000"}
SECS=${SECS:-10}
SYNC=${SYNC:-off}
PORT=${PORT:-25442}
RPORT=${RPORT:-25443}
DIR=target/bench-delivery-cluster
BENCH=target/release/pgwh-bench
WEBHOOKD=target/release/webhookd
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=bench
URL="postgres://postgres@127.0.0.1:$PORT/bench"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/cluster.sh stop "$DIR"
}
trap cleanup EXIT

cargo build --release -q -p pg_webhook_bench -p webhookd
scripts/cluster.sh start "$DIR" "$PORT" "synchronous_commit = $SYNC" "max_wal_size = 4GB"
psql -qX -d postgres -c "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c "CREATE DATABASE bench"
psql -qX -c "CREATE EXTENSION pg_webhook" -c "ALTER DATABASE bench SET webhook.allow_http = on"
secret=$("$BENCH" setup --database-url "$URL" --port "$RPORT")

echo "machine: $(nproc) cores; $(psql -XtAc 'SHOW server_version'); synchronous_commit=$SYNC"
echo "== drain: $N events committed with no dispatcher running, then webhookd starts"
psql -qX -c "INSERT INTO bench_orders (customer_id, total, items) SELECT g, g * 0.37, g % 9 FROM generate_series(1, $N) g"
"$BENCH" drain --port "$RPORT" --count "$N" --secret "$secret" &
drain=$!
sleep 0.5
WEBHOOKD_LOG=${WEBHOOKD_LOG:-warn} DATABASE_URL=$URL "$WEBHOOKD" run --allow-private-targets --concurrency 128 --batch 500 --metrics-addr 127.0.0.1:$((RPORT + 1)) 2>"$DIR/webhookd.log" &
pids+=($!)
wait "$drain"

echo "== latency: open-loop inserts (one row per transaction), commit → receipt"
for rate in $RATES; do
  "$BENCH" latency --database-url "$URL" --port "$RPORT" --rate "$rate" --duration "${SECS}s"
done
