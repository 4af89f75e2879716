#!/usr/bin/env bash
# `make bench`: the benchmark suite of BENCHMARKS.md (B1–B7) on a throwaway
# cluster, every figure beside a baseline measured in the same run. Results
# go to target/bench/results.jsonl; bench/report.py renders them into
# BENCHMARKS.md (between the bench markers) and docs/bench/*.png.
#
#   scripts/bench.sh                 # everything (about 45 minutes)
#   QUICK=1 scripts/bench.sh         # each benchmark briefly (< 5 minutes),
#                                    # report in target/bench/quick/ only
#   ONLY="B1 B3" scripts/bench.sh    # a subset (B3 includes B4 and B7)
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
ONLY=${ONLY:-"B1 B2 B3 B5 B6"}
PORT=${PORT:-25441}
RPORT=${RPORT:-25443}  # receiver; RPORT+1 webhookd metrics; RPORT+2 second receiver
DIR=target/bench-cluster
PGBIN=/usr/lib/postgresql/15/bin
BENCH=target/release/pgwh-bench
# Another build of webhookd (an A/B run of two builds) and another output
# directory may be given.
WEBHOOKD=${WEBHOOKD:-target/release/webhookd}
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres

if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-target/bench/quick}
  REPS=${REPS:-1}; SECS=${SECS:-2}; CLIENTS=${CLIENTS:-8}; SYNCS=${SYNCS:-off}; BULK_ROWS=10000
  STEP_SECS=${STEP_SECS:-3}; RATES=${RATES:-"2000 8000"}; BASE_RATES=${BASE_RATES:-"200 800"}; LAT_SECS=${LAT_SECS:-3}
  BACKLOG=${BACKLOG:-50000}; PRODUCER_SECS=3; DOWN_SECS=5; ISO_SECS=8; B2_CLIENTS="8"
else
  OUT=target/bench
  REPS=${REPS:-5}; SECS=${SECS:-4}; CLIENTS=${CLIENTS:-"1 8 32"}; SYNCS=${SYNCS:-"off on"}; BULK_ROWS=100000
  STEP_SECS=${STEP_SECS:-10}; RATES=${RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 10000 12000"}
  BASE_RATES=${BASE_RATES:-"100 200 400 800 1600 3200 6400"}; LAT_SECS=${LAT_SECS:-15}
  BACKLOG=${BACKLOG:-1000000}; PRODUCER_SECS=${PRODUCER_SECS:-15}; DOWN_SECS=${DOWN_SECS:-60}; ISO_SECS=${ISO_SECS:-75}
  B2_CLIENTS=${B2_CLIENTS:-"8 32"}
fi
ROWS_PER_TX=${ROWS_PER_TX:-10}
RESULTS=$OUT/results.jsonl
mkdir -p "$OUT"
: >"$RESULTS"
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()

stop_bg() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_bg
  scripts/cluster.sh stop "$DIR" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

emit() { echo "$1" >>"$RESULTS"; }
say() { printf '\n== %s\n' "$*"; }

cargo build --release -q -p pg_webhook_bench -p webhookd
scripts/cluster.sh start "$DIR" "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
  "max_connections = 200" "shared_buffers = 512MB" >/dev/null

set_sync() {
  psql -qX -d postgres -c "ALTER SYSTEM SET synchronous_commit = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
fresh_db() { # name
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

fsync=$($PGBIN/pg_test_fsync -s 1 -f "$tmp/fsync.test" 2>/dev/null | awk '/fdatasync/ && /ops\/sec/ {print $2; exit}')
machine="$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME")"
pgver=$(psql -XtAc 'SHOW server_version' -d postgres)
emit "{\"bench\":\"meta\",\"machine\":\"$machine\",\"postgres\":\"$pgver\",\"fsync_ops_per_s\":${fsync:-0},\"quick\":$QUICK,\"reps\":$REPS,\"secs\":$SECS,\"rows_per_tx\":$ROWS_PER_TX,\"backlog\":$BACKLOG,\"down_s\":$DOWN_SECS,\"iso_s\":$ISO_SECS,\"date\":\"$(date -u +%F)\"}"
echo "machine: $machine; PostgreSQL $pgver; pg_test_fsync fdatasync: ${fsync:-?} ops/s"

# ---------------------------------------------------------------------------
# B1 capture cost: pgbench single-row INSERT / UPDATE transactions.
# ---------------------------------------------------------------------------
b1() {
  local variants="plain tracked naive notify pgq"
  fresh_db bench
  psql -qX -d bench -c "CREATE EXTENSION pg_webhook" -f bench/sql/capture.sql >/dev/null
  for v in $variants; do
    cat >"$tmp/insert_$v.sql" <<SQL
\set c random(1, 100000)
\set n random(1, 9)
INSERT INTO orders_$v (customer_id, total, items, note) VALUES (:c, :c * 0.37, :n, 'leave at the door');
SQL
    cat >"$tmp/update_$v.sql" <<SQL
\set id random(1, 100000)
UPDATE orders_$v SET status = 'paid', total = total + 1 WHERE id = :id;
SQL
  done
  reset() { # variant op
    psql -qX -d bench -c "TRUNCATE orders_$1, naive_outbox, webhook.event_log, pgq.event_template" >/dev/null
    if [ "$2" = update ]; then
      # Explicit ids 1..100000, the range the UPDATE script picks from: the
      # tables share orders_plain's id sequence (LIKE ... INCLUDING ALL), so
      # generated ids would lie past it and every UPDATE would match nothing.
      psql -qX -d bench -c "ALTER TABLE orders_$1 DISABLE TRIGGER USER" \
        -c "INSERT INTO orders_$1 (id, customer_id, total, items, note) SELECT g, g, g * 0.37, g % 9, 'x' FROM generate_series(1, 100000) g" \
        -c "ALTER TABLE orders_$1 ENABLE TRIGGER USER" >/dev/null
    fi
    psql -qX -d bench -c "VACUUM ANALYZE orders_$1" -c "CHECKPOINT" >/dev/null
  }
  for sync in $SYNCS; do
    set_sync "$sync"
    for op in insert update; do
      for c in $CLIENTS; do
        say "B1 $op, $c clients, synchronous_commit=$sync ($REPS x ${SECS}s, interleaved)"
        for rep in $(seq "$REPS"); do
          line="  rep $rep:"
          for v in $variants; do
            reset "$v" "$op"
            tps=$($PGBIN/pgbench -n -c "$c" -j "$c" -T "$SECS" -f "$tmp/${op}_$v.sql" bench 2>/dev/null | awk '/^tps/ {print int($3); exit}')
            emit "{\"bench\":\"B1\",\"op\":\"$op\",\"sync\":\"$sync\",\"clients\":$c,\"variant\":\"$v\",\"rep\":$rep,\"tps\":${tps:-0}}"
            line+=" $v $tps"
          done
          echo "$line"
        done
      done
    done
  done
  set_sync off
  say "B1 bulk: $BULK_ROWS rows by INSERT ... SELECT and COPY (median of 3, ms)"
  seq 1 "$BULK_ROWS" | awk '{printf "%d,%.2f,%d,bulk\n", $1, $1 * 0.37, $1 % 9}' >"$tmp/rows.csv"
  chmod 644 "$tmp/rows.csv"
  for kind in insert copy; do
    line="  $kind:"
    for v in plain tracked naive stmt pgq; do
      times=()
      for i in 1 2 3; do
        reset "$v" insert
        if [ "$kind" = insert ]; then
          sql="INSERT INTO orders_$v (customer_id, total, items, note) SELECT g, g * 0.37, g % 9, 'bulk' FROM generate_series(1, $BULK_ROWS) g;"
        else
          sql="COPY orders_$v (customer_id, total, items, note) FROM '$tmp/rows.csv' WITH (FORMAT csv);"
        fi
        times+=("$({ echo '\timing on'; echo "$sql"; } | psql -qX -d bench 2>&1 | awk '/^Time:/ {print $2}')")
      done
      ms=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
      emit "{\"bench\":\"B1bulk\",\"kind\":\"$kind\",\"variant\":\"$v\",\"rows\":$BULK_ROWS,\"ms\":$ms}"
      line+=" $v ${ms}ms"
    done
    echo "$line"
  done
}

# ---------------------------------------------------------------------------
# End-to-end helpers: a database with bench_orders tracked and endpoints.
# ---------------------------------------------------------------------------
e2e_db() { # name urls max_in_flight → prints the secret
  fresh_db "$1" >/dev/null
  psql -qX -d "$1" -c "CREATE EXTENSION pg_webhook" -c "ALTER DATABASE $1 SET webhook.allow_http = on" >/dev/null
  "$BENCH" setup --database-url "postgres://postgres@127.0.0.1:$PORT/$1" --url "$2" --max-in-flight "${3:-128}"
}
start_webhookd() { # db [extra args]
  local db=$1; shift
  WEBHOOKD_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$WEBHOOKD" run \
    --allow-private-targets --concurrency 256 --batch 500 --metrics-addr "127.0.0.1:$((RPORT + 1))" "$@" \
    2>>"$OUT/webhookd.log" &
  WEBHOOKD_PID=$!
  pids+=("$WEBHOOKD_PID")
  sleep 0.3
}
wait_idle() { # db query: until the query says 0 left (at most 120 s)
  for _ in $(seq 240); do
    if [ "$(psql -XtA -d "$1" -c "$2")" = 0 ]; then
      return 0
    fi
    sleep 0.5
  done
  echo "  (backlog still not drained after 120 s)"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# ---------------------------------------------------------------------------
# B2 wake-up cost: NOTIFY wake-ups vs poll-only, dispatcher running, sync on.
# ---------------------------------------------------------------------------
b2() {
  set_sync on
  secret=$(e2e_db bench_e2e "http://127.0.0.1:$RPORT/hook")
  "$BENCH" receive --port "$RPORT" --secret "$secret" &
  pids+=($!)
  cat >"$tmp/b2.sql" <<SQL
\set c random(1, 100000)
INSERT INTO bench_orders (customer_id, total, items, note) VALUES (:c, :c * 0.37, 3, 'b2');
SQL
  for c in $B2_CLIENTS; do
    say "B2 $c clients, synchronous_commit=on: NOTIFY wake-ups vs poll-only ($REPS x ${SECS}s)"
    for rep in $(seq "$REPS"); do
      line="  rep $rep:"
      for mode in notify poll; do
        if [ "$mode" = notify ]; then
          psql -qX -d postgres -c "ALTER DATABASE bench_e2e RESET webhook.notify" >/dev/null
          start_webhookd bench_e2e
        else
          psql -qX -d postgres -c "ALTER DATABASE bench_e2e SET webhook.notify = off" >/dev/null
          start_webhookd bench_e2e --no-listen --poll-interval 100ms
        fi
        tps=$($PGBIN/pgbench -n -c "$c" -j "$c" -T "$SECS" -f "$tmp/b2.sql" bench_e2e 2>/dev/null | awk '/^tps/ {print int($3); exit}')
        kill "$WEBHOOKD_PID"; wait "$WEBHOOKD_PID" 2>/dev/null || true
        emit "{\"bench\":\"B2\",\"clients\":$c,\"mode\":\"$mode\",\"rep\":$rep,\"tps\":${tps:-0}}"
        line+=" $mode $tps"
      done
      echo "$line"
    done
  done
  psql -qX -d postgres -c "ALTER DATABASE bench_e2e RESET webhook.notify" >/dev/null
  stop_bg
  set_sync off
}

# ---------------------------------------------------------------------------
# B3 throughput ramp, B4 latency at 10/50/80 % of it, B7 dispatcher cost:
# pg_webhook + webhookd vs the Hasura-style baseline (bench/src/baseline.rs).
# ---------------------------------------------------------------------------
ramp() { # system criterion(sustained|flat) db rates step-args...
  local system=$1 criterion=$2 db=$3 rates=$4; shift 4
  local best=0
  for r in $rates; do
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/$db" --port "$RPORT" --rate "$r" \
      --duration "${STEP_SECS}s" --rows-per-tx "$ROWS_PER_TX" --settle 20s --json "$RESULTS" \
      --tag bench=B3 --tag system="$system" "$@" || true
    if tail -1 "$RESULTS" | grep -q "\"$criterion\":true"; then best=$r; else break; fi
    psql -qX -d "$db" -c "VACUUM ANALYZE" >/dev/null
  done
  echo "$best"
}
b3() {
  set_sync off
  say "B3 pg_webhook: open-loop ramp, $ROWS_PER_TX rows per transaction, ${STEP_SECS}s per step"
  secret=$(e2e_db bench_e2e "http://127.0.0.1:$RPORT/hook")
  start_webhookd bench_e2e
  best=$(ramp pg_webhook sustained bench_e2e "$RATES" --secret "$secret" | tee >(cat >&2) | tail -1)
  echo "  highest sustained rate: $best events/s"
  wait_idle bench_e2e "SELECT (SELECT count(*) FROM webhook.event_log) - (SELECT count(*) FROM webhook.delivery WHERE status = 'succeeded')"
  say "B4 pg_webhook: latency at 10/50/80 % of $best events/s (${LAT_SECS}s each); B7 webhookd cost at 50 %"
  for pct in 10 50 80; do
    rate=$((best * pct / 100)); [ "$rate" -ge 10 ] || rate=10
    t0=$(cpu_ticks "$WEBHOOKD_PID")
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/bench_e2e" --port "$RPORT" --rate "$rate" \
      --duration "${LAT_SECS}s" --rows-per-tx "$ROWS_PER_TX" --secret "$secret" --json "$RESULTS" \
      --tag bench=B4 --tag system=pg_webhook --tag load_pct=$pct || true
    t1=$(cpu_ticks "$WEBHOOKD_PID")
    if [ "$pct" = 50 ]; then
      events=$((rate * LAT_SECS))
      cpu_us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $events" | bc -l)
      emit "{\"bench\":\"B7\",\"phase\":\"steady\",\"rate\":$rate,\"events\":$events,\"cpu_us_per_event\":$cpu_us,\"rss_mb\":$(rss_mb "$WEBHOOKD_PID" VmRSS),\"rss_peak_mb\":$(rss_mb "$WEBHOOKD_PID" VmHWM)}"
      printf '  webhookd: %.1f us CPU per event, RSS %s MB\n' "$cpu_us" "$(rss_mb "$WEBHOOKD_PID" VmRSS)"
    fi
  done
  stop_bg

  say "B3 baseline (Hasura-style: PL/pgSQL trigger, 1 s poll when idle, batch 100, UPDATE per ack)"
  fresh_db bench_base >/dev/null
  "$BENCH" setup-baseline --database-url "postgres://postgres@127.0.0.1:$PORT/bench_base"
  "$BENCH" baseline --database-url "postgres://postgres@127.0.0.1:$PORT/bench_base" --url "http://127.0.0.1:$RPORT/hook" 2>>"$OUT/baseline.log" &
  pids+=($!)
  base=$(ramp baseline flat bench_base "$BASE_RATES" | tee >(cat >&2) | tail -1)
  echo "  highest rate with a flat backlog: $base events/s"
  wait_idle bench_base "SELECT count(*) FROM hdb_event_log WHERE NOT delivered"
  if [ "$base" = 0 ]; then base=$(echo "$BASE_RATES" | awk '{print $1}'); fi
  say "B4 baseline: latency at 10/50/80 % of $base events/s"
  for pct in 10 50 80; do
    rate=$((base * pct / 100)); [ "$rate" -ge 10 ] || rate=10
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/bench_base" --port "$RPORT" --rate "$rate" \
      --duration "${LAT_SECS}s" --rows-per-tx "$ROWS_PER_TX" --json "$RESULTS" \
      --tag bench=B4 --tag system=baseline --tag load_pct=$pct || true
  done
  stop_bg
}

# ---------------------------------------------------------------------------
# B5 backlog: events committed with no dispatcher, then drained while a
# producer keeps inserting.
# ---------------------------------------------------------------------------
b5() {
  set_sync off
  say "B5 backlog: $BACKLOG events, then webhookd starts while pgbench inserts (8 clients)"
  secret=$(e2e_db bench_backlog "http://127.0.0.1:$RPORT/hook")
  cat >"$tmp/b5.sql" <<SQL
\set c random(1, 100000)
INSERT INTO bench_orders (customer_id, total, items, note) VALUES (:c, :c * 0.37, 3, 'b5');
SQL
  idle=$($PGBIN/pgbench -n -c 8 -j 8 -T "$PRODUCER_SECS" -f "$tmp/b5.sql" bench_backlog 2>/dev/null | awk '/^tps/ {print int($3); exit}')
  echo "  producer with no dispatcher: $idle tps"
  psql -qX -d bench_backlog -c "TRUNCATE bench_orders, webhook.event_log, webhook.delivery, webhook.attempt_log RESTART IDENTITY" >/dev/null
  for ((done_rows = 0; done_rows < BACKLOG; done_rows += 10000)); do
    psql -qX -d bench_backlog -c "INSERT INTO bench_orders (customer_id, total, items, note) SELECT g, g * 0.37, g % 9, 'backlog' FROM generate_series(1, least(10000, $BACKLOG - $done_rows)) g" >/dev/null
  done
  psql -qX -d bench_backlog -c "VACUUM ANALYZE" >/dev/null
  "$BENCH" drain --port "$RPORT" --count "$BACKLOG" --max-id "$BACKLOG" --secret "$secret" --timeout 900s \
    --json "$tmp/b5.json" --tag bench=B5 &
  drain=$!
  sleep 0.5
  start_webhookd bench_backlog
  during=$($PGBIN/pgbench -n -c 8 -j 8 -T "$PRODUCER_SECS" -f "$tmp/b5.sql" bench_backlog 2>/dev/null | awk '/^tps/ {print int($3); exit}')
  echo "  producer during the drain: $during tps"
  wait "$drain" || true
  peak=$(rss_mb "$WEBHOOKD_PID" VmHWM)
  # Let the producer's own events finish, then measure what is left behind.
  for _ in $(seq 60); do
    [ "$(psql -XtA -d bench_backlog -c "SELECT count(*) FROM webhook.delivery WHERE status = 'pending'")" = 0 ] && break
    sleep 1
  done
  read -r outbox_mb dead <<<"$(psql -XtA -F' ' -d bench_backlog -c "SELECT round((pg_total_relation_size('webhook.event_log') + pg_total_relation_size('webhook.delivery') + pg_total_relation_size('webhook.attempt_log')) / 1048576.0, 1), (SELECT sum(n_dead_tup) FROM pg_stat_user_tables WHERE schemaname = 'webhook')")"
  stop_bg
  if [ -s "$tmp/b5.json" ]; then
    python3 - "$tmp/b5.json" "$RESULTS" "$idle" "$during" "$outbox_mb" "$dead" "$peak" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
r.update(idle_tps=float(sys.argv[3]), drain_tps=float(sys.argv[4]), store_mb=float(sys.argv[5]),
         dead_tuples=float(sys.argv[6] or 0), rss_peak_mb=float(sys.argv[7] or 0))
open(sys.argv[2], "a").write(json.dumps(r) + "\n")
print(f"  drained in {r['seconds']:.1f} s ({r['events_per_s']:.0f} events/s); producer {r['drain_tps'] / max(r['idle_tps'], 1):.2f}x idle; "
      f"outbox+deliveries+attempts {r['store_mb']} MB, {r['dead_tuples']:.0f} dead tuples; webhookd peak RSS {r['rss_peak_mb']} MB")
PY
  fi
}

# ---------------------------------------------------------------------------
# B6 isolation: /b fails 10 %, /c is down for a while; /a's latency vs an
# all-healthy run.
# ---------------------------------------------------------------------------
b6() {
  set_sync off
  rate=${ISO_RATE:-1000}
  for scenario in ${ISO_SCENARIOS:-healthy faulty}; do
    say "B6 $scenario: three endpoints, $rate events/s for ${ISO_SECS}s"
    secret=$(e2e_db bench_iso "http://127.0.0.1:$RPORT/a,http://127.0.0.1:$RPORT/b,http://127.0.0.1:$((RPORT + 2))/c")
    start_webhookd bench_iso
    if [ "$scenario" = healthy ]; then
      args=(--down "$((RPORT + 2))=0s")
    else
      args=(--fail /b=0.1 --down "$((RPORT + 2))=${DOWN_SECS}s")
    fi
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/bench_iso" --port "$RPORT" --rate "$rate" \
      --duration "${ISO_SECS}s" --rows-per-tx "$ROWS_PER_TX" --secret "$secret" --path /a "${args[@]}" \
      --json "$RESULTS" --tag bench=B6 --tag scenario=$scenario || true
    stop_bg
  done
}

for b in $ONLY; do
  case "$b" in
    B1) b1 ;; B2) b2 ;; B3 | B4 | B7) b3 ;; B5) b5 ;; B6) b6 ;;
    *) echo "unknown benchmark $b" >&2; exit 2 ;;
  esac
done

say "report"
if [ "$QUICK" = 1 ]; then
  .venv/bin/python bench/report.py "$RESULTS" --plots "$OUT/plots" >"$OUT/report.md"
  echo "quick report: $OUT/report.md, plots in $OUT/plots (BENCHMARKS.md untouched)"
else
  .venv/bin/python bench/report.py "$RESULTS" --plots docs/bench --splice BENCHMARKS.md
  echo "BENCHMARKS.md and docs/bench/*.png updated from $RESULTS"
fi
