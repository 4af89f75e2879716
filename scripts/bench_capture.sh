#!/usr/bin/env bash
# B1 (first cut): capture cost. pgbench, single-row INSERT transactions into
# an 8-column orders table: plain vs tracked by pg_webhook vs the naive
# PL/pgSQL outbox trigger (to_jsonb + pg_notify per row). Interleaved
# repetitions, medians, ratios to the plain table from the same run; then
# 100,000-row INSERT ... SELECT and COPY.
#
#   REPS=5 SECS=10 CLIENTS=8 SYNC=off scripts/bench_capture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-8}
SYNC=${SYNC:-off}
PORT=${PORT:-25441}
DIR=target/bench-cluster
PGBIN=/usr/lib/postgresql/15/bin
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=bench

scripts/cluster.sh start "$DIR" "$PORT" "synchronous_commit = $SYNC" "max_wal_size = 4GB" "checkpoint_timeout = 30min"
trap 'scripts/cluster.sh stop "$DIR"' EXIT
psql -qX -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench"
psql -qX -c "ALTER SYSTEM SET synchronous_commit = $SYNC" -c "SELECT pg_reload_conf()" >/dev/null
psql -qX -c "CREATE EXTENSION pg_webhook" -f bench/sql/capture.sql >/dev/null

tmp=$(mktemp -d)
for v in plain tracked naive; do
  cat >"$tmp/$v.sql" <<SQL
\set c random(1, 100000)
\set n random(1, 9)
INSERT INTO orders_$v (customer_id, total, items, note) VALUES (:c, :c * 0.37, :n, 'leave at the door');
SQL
done

reset_tables() {
  psql -qX -c "TRUNCATE orders_plain, orders_tracked, orders_naive, naive_outbox, webhook.event_log" \
       -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(psql -XtAc 'SELECT version()' | cut -d, -f1)"
echo "synchronous_commit=$SYNC, $CLIENTS clients, ${SECS}s per run, $REPS interleaved repetitions"
echo "pg_test_fsync (fdatasync, one 8kB write): $($PGBIN/pg_test_fsync -s 1 -f "$tmp/fsync.test" 2>/dev/null | awk '/fdatasync/ && /ops\/sec/ {print $2 " ops/sec"; exit}')"

declare -A results
for rep in $(seq "$REPS"); do
  for v in plain tracked naive; do
    reset_tables
    tps=$($PGBIN/pgbench -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$tmp/$v.sql" 2>/dev/null \
          | awk '/^tps/ {print int($3); exit}')
    results[$v]+="$tps "
    printf '  rep %d  %-8s %8s tps\n' "$rep" "$v" "$tps"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
plain=$(echo "${results[plain]}" | median)
tracked=$(echo "${results[tracked]}" | median)
naive=$(echo "${results[naive]}" | median)
echo
echo "single-row INSERT, median TPS (ratio to plain):"
printf '  %-34s %8d  %.2fx\n' "plain table" "$plain" 1
printf '  %-34s %8d  %.2fx\n' "pg_webhook" "$tracked" "$(echo "$tracked / $plain" | bc -l)"
printf '  %-34s %8d  %.2fx\n' "naive PL/pgSQL trigger + NOTIFY" "$naive" "$(echo "$naive / $plain" | bc -l)"
printf '  pg_webhook vs naive: %.2fx\n' "$(echo "$tracked / $naive" | bc -l)"
# Paired ratios (each repetition against the plain run next to it) are less
# sensitive to drift over the run than the ratio of medians.
paired=$(paste -d' ' <(echo "${results[tracked]}" | tr ' ' '\n' | grep -v '^$') <(echo "${results[plain]}" | tr ' ' '\n' | grep -v '^$') \
         | awk '{printf "%.4f\n", $1 / $2}' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
printf '  pg_webhook / plain, median of paired repetitions: %.2fx\n' "$paired"

echo
echo "bulk: 100,000 rows, median of 3 (ms, ratio to plain):"
bulk() { # table, statement kind
  local best=()
  for i in 1 2 3; do
    reset_tables
    if [ "$2" = insert ]; then
      sql="INSERT INTO $1 (customer_id, total, items, note) SELECT g, g * 0.37, g % 9, 'bulk' FROM generate_series(1, 100000) g"
      ms=$( { echo '\timing on'; echo "$sql;"; } | psql -qX 2>&1 | awk '/^Time:/ {print int($2)}')
    else
      ms=$( { echo '\timing on'; echo "COPY $1 (customer_id, total, items, note) FROM '$tmp/rows.csv' WITH (FORMAT csv);"; } \
            | psql -qX 2>&1 | awk '/^Time:/ {print int($2)}')
    fi
    best+=("$ms")
  done
  printf '%s\n' "${best[@]}" | sort -n | sed -n 2p
}
seq 1 100000 | awk '{printf "%d,%.2f,%d,bulk\n", $1, $1 * 0.37, $1 % 9}' > "$tmp/rows.csv"
chmod 755 "$tmp"; chmod 644 "$tmp/rows.csv"
for kind in insert copy; do
  p=$(bulk orders_plain $kind); t=$(bulk orders_tracked $kind); n=$(bulk orders_naive $kind); s=$(bulk orders_stmt $kind)
  printf '  %-6s plain %6d ms | pg_webhook %6d ms (%.2fx) | naive per-row %6d ms (%.2fx) | statement-level PL/pgSQL %6d ms (%.2fx)\n' \
    "$kind" "$p" "$t" "$(echo "$t / $p" | bc -l)" "$n" "$(echo "$n / $p" | bc -l)" "$s" "$(echo "$s / $p" | bc -l)"
done
rm -rf "$tmp"
