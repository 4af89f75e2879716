#!/usr/bin/env bash
# `make bench`: the benchmark suite of BENCHMARKS.md on a throwaway cluster,
# every figure beside a baseline measured in the same run. Results go to
# target/bench/results.jsonl; bench/pgwh_bench renders them into
# BENCHMARKS.md (between the bench markers) and docs/bench/*.png and holds
# the goals they are judged by (goals.py).
#
#   scripts/bench.sh                 # everything (about an hour)
#   QUICK=1 scripts/bench.sh         # each benchmark briefly,
#                                    # report in target/bench/quick/ only
#   ONLY="B1 B3" scripts/bench.sh    # a subset (B3 includes B4 and B7)
#   EDITIONS=native scripts/bench.sh # one edition only
#
# Benchmarks: B1 capture, B2 wake-ups, B3/B4/B7 throughput, latency and
# webhookd's cost, B5 backlog, B6 isolation, L liveness behind unmatched
# events (La, Lb, Lc alone), B9 WAL per delivered event, B10 many endpoints,
# B11 PostgreSQL CPU per event at 500 commits/s; B8 retention soak (20
# minutes at 2,000 events/s; run only when asked for: ONLY=B8).
#
# B1, B2, B3/B4 and B11 measure each edition of EDITIONS side by side
# (native: CREATE EXTENSION; portable: `webhookd install` as the database's
# owner, an ordinary role); the others measure the first of them.
#
# Another build may be measured (a before/after pair in one run, e.g. the
# tree of scripts/baseline.sh): PGBIN (the PostgreSQL whose extension
# directory holds that pg_webhook), WEBHOOKD and BENCH (pgwh-bench). Only
# the binaries left at their defaults are built. OUT (results), DIR (the
# cluster), PORT and RPORT (receiver; RPORT+1 webhookd metrics, RPORT+2 a
# second receiver) keep a run apart from others; BENCHMARKS.md is rewritten
# only by a full run into the default OUT (SPLICE=0: never).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
ONLY=${ONLY:-"B1 B2 B3 B5 B6 L B9 B10 B11"}
EDITIONS=${EDITIONS:-"native portable"}
for e in $EDITIONS; do
  case "$e" in native | portable) ;; *) echo "bench: EDITIONS: $e is neither native nor portable" >&2; exit 2 ;; esac
done
EDITION=${EDITIONS%% *} # what e2e_db and plain_db install; each_edition sets it in turn
# each_edition FN: FN once per edition of EDITIONS, with EDITION set to it.
each_edition() {
  for EDITION in $EDITIONS; do "$1"; done
  EDITION=${EDITIONS%% *}
}
PORT=${PORT:-25441}
RPORT=${RPORT:-25443}  # receiver; RPORT+1 webhookd metrics; RPORT+2 second receiver
PG=${PGWEBHOOK_PG:-15}  # the major version (scripts/pg-root.sh): `make bench PG=17`
DIR=${DIR:-target/bench-cluster-pg$PG}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG/bin}
BENCH=${BENCH:-target/release/pgwh-bench}
WEBHOOKD=${WEBHOOKD:-target/release/webhookd}
export PGBIN  # scripts/cluster.sh runs this PostgreSQL
# pgtool PROGRAM ARGS...: a client program of that PostgreSQL (in its root
# for 17 and 18), whose WAL format pg_waldump must know.
pgtool() { scripts/pg-root.sh "$PG" run "$PGBIN/$1" "${@:2}"; }
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres

if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-target/bench/quick}
  REPS=${REPS:-1}; SECS=${SECS:-2}; CLIENTS=${CLIENTS:-8}; SYNCS=${SYNCS:-off}; BULK_ROWS=10000
  STEP_SECS=${STEP_SECS:-3}; RATES=${RATES:-"2000 8000"}; BASE_RATES=${BASE_RATES:-"200 800"}; LAT_SECS=${LAT_SECS:-3}
  BACKLOG=${BACKLOG:-50000}; PRODUCER_SECS=3; DOWN_SECS=5; ISO_SECS=8; B2_CLIENTS="8"
  L_ROWS=${L_ROWS:-10000}; L_TIMEOUT=${L_TIMEOUT:-30}; B9_EVENTS=${B9_EVENTS:-10000}
  B10_EVENTS=${B10_EVENTS:-5000}; B10_NS=${B10_NS:-"1 100"}; B11_SECS=${B11_SECS:-15}
  B8_SECS=${B8_SECS:-120}; B8_RETENTION=${B8_RETENTION:-30 seconds}; B8_MAINTAIN=${B8_MAINTAIN:-5s}; B8_SAMPLE=${B8_SAMPLE:-15}
else
  OUT=${OUT:-target/bench}
  REPS=${REPS:-5}; SECS=${SECS:-4}; CLIENTS=${CLIENTS:-"1 8 32"}; SYNCS=${SYNCS:-"off on"}; BULK_ROWS=100000
  STEP_SECS=${STEP_SECS:-10}; RATES=${RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 10000 12000"}
  BASE_RATES=${BASE_RATES:-"100 200 400 800 1600 3200 6400"}; LAT_SECS=${LAT_SECS:-15}
  BACKLOG=${BACKLOG:-1000000}; PRODUCER_SECS=${PRODUCER_SECS:-15}; DOWN_SECS=${DOWN_SECS:-60}; ISO_SECS=${ISO_SECS:-75}
  B2_CLIENTS=${B2_CLIENTS:-"8 32"}
  L_ROWS=${L_ROWS:-100000}; L_TIMEOUT=${L_TIMEOUT:-120}; B9_EVENTS=${B9_EVENTS:-50000}
  B10_EVENTS=${B10_EVENTS:-20000}; B10_NS=${B10_NS:-"1 100 1000 5000"}; B11_SECS=${B11_SECS:-60}
  B8_SECS=${B8_SECS:-1200}; B8_RETENTION=${B8_RETENTION:-2 minutes}; B8_MAINTAIN=${B8_MAINTAIN:-5s}; B8_SAMPLE=${B8_SAMPLE:-30}
fi
# B9 runs on a cluster of its own (DIR-b9) on this port.
B9_PORT=${B9_PORT:-$((PORT + 1))}
# B10: give up on one N after this long (the rate is then of what arrived).
B10_TIMEOUT=${B10_TIMEOUT:-600}
# B10: each endpoint's max_in_flight (the product's default).
B10_MAX_IN_FLIGHT=${B10_MAX_IN_FLIGHT:-16}
# B11: the producer's rate (single-row commits/s), clients, synchronous_commit.
B11_RATE=${B11_RATE:-500}; B11_CLIENTS=${B11_CLIENTS:-8}; B11_SYNC=${B11_SYNC:-on}
ROWS_PER_TX=${ROWS_PER_TX:-10}
# B8: the offered rate (events/s); how long a step waits for its last
# events before the next one starts (what has not arrived by then counts as
# missing in its sample); the generation interval (empty: an eighth of
# B8_RETENTION). The store holds between the retention and the retention
# plus a generation and a maintain() interval of events, a sawtooth whose
# top over its bottom must stay within B8's goal: an eighth keeps it there,
# a quarter did not (BENCHMARKS.md, B8).
B8_RATE=${B8_RATE:-2000}; B8_SETTLE=${B8_SETTLE:-5s}; B8_GENERATION=${B8_GENERATION:-}
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
  scripts/cluster.sh stop "$DIR-b9" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

emit() { echo "$1" >>"$RESULTS"; }
say() { printf '\n== %s\n' "$*"; }
# The bench's Python (bench/pgwh_bench): the result lines written from a
# benchmark's temporary files, and the report. The system's python3 unless
# PY names another (the report needs matplotlib, the rest only the standard
# library).
pybench() { PYTHONPATH="bench${PYTHONPATH:+:$PYTHONPATH}" "${PY:-python3}" -m pgwh_bench "$@"; }

build=()
[ "$BENCH" = target/release/pgwh-bench ] && build+=(-p pg_webhook_bench)
[ "$WEBHOOKD" = target/release/webhookd ] && build+=(-p webhookd)
if [ ${#build[@]} -gt 0 ] && [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q "${build[@]}"
fi
# A missing program would otherwise show as a benchmark that delivered nothing.
for exe in "$BENCH" "$WEBHOOKD"; do
  [ -x "$exe" ] || { echo "bench: $exe is missing (NO_BUILD=1 does not build it)" >&2; exit 1; }
done
scripts/cluster.sh start "$DIR" "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
  "max_connections = 200" "shared_buffers = 512MB" >/dev/null

set_sync() {
  psql -qX -d postgres -c "ALTER SYSTEM SET synchronous_commit = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
fresh_db() { # name
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

fsync=$(pgtool pg_test_fsync -s 1 -f "$tmp/fsync.test" 2>/dev/null | awk '/fdatasync/ && /ops\/sec/ {print $2; exit}')
machine="$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME")"
pgver=$(psql -XtAc 'SHOW server_version' -d postgres)
emit "{\"bench\":\"meta\",\"machine\":\"$machine\",\"pgbin\":\"$PGBIN\",\"webhookd\":\"$WEBHOOKD\",\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"postgres\":\"$pgver\",\"editions\":\"$EDITIONS\",\"fsync_ops_per_s\":${fsync:-0},\"quick\":$QUICK,\"reps\":$REPS,\"secs\":$SECS,\"rows_per_tx\":$ROWS_PER_TX,\"backlog\":$BACKLOG,\"down_s\":$DOWN_SECS,\"iso_s\":$ISO_SECS,\"date\":\"$(date -u +%F)\"}"
echo "machine: $machine; PostgreSQL $pgver; pg_test_fsync fdatasync: ${fsync:-?} ops/s"

# ---------------------------------------------------------------------------
# B1 capture cost: pgbench single-row INSERT / UPDATE transactions.
# ---------------------------------------------------------------------------
# B1's variants by database: the native edition's tracked table beside the
# baselines in `bench`, the portable edition's in `bench_portable` (one
# database holds one edition).
b1_db() { if [ "$1" = portable ]; then echo bench_portable; else echo bench; fi; }
b1() {
  local variants="plain" bulk_variants="plain" e
  for e in $EDITIONS; do
    if [ "$e" = native ]; then variants+=" tracked"; bulk_variants+=" tracked"; else variants+=" portable"; bulk_variants+=" portable"; fi
  done
  variants+=" naive notify pgq"; bulk_variants+=" naive stmt pgq"
  fresh_db bench
  install_edition bench native
  psql -qX -d bench -f bench/sql/capture.sql >/dev/null
  if [[ " $EDITIONS " == *" portable "* ]]; then
    fresh_db bench_portable
    install_edition bench_portable portable
    psql -qX -d bench_portable -f bench/sql/orders.sql -c "CREATE TABLE orders_portable (LIKE orders_plain INCLUDING ALL)" \
      -c "SELECT webhook.track('orders_portable', '{insert,update}')" >/dev/null
  fi
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
    local db
    db=$(b1_db "$1")
    if [ "$1" = portable ]; then
      psql -qX -d "$db" -c "TRUNCATE orders_$1, webhook.event_log" >/dev/null
    else
      psql -qX -d "$db" -c "TRUNCATE orders_$1, naive_outbox, webhook.event_log, pgq.event_template" >/dev/null
    fi
    if [ "$2" = update ]; then
      # Explicit ids 1..100000, the range the UPDATE script picks from: the
      # tables share orders_plain's id sequence (LIKE ... INCLUDING ALL), so
      # generated ids would lie past it and every UPDATE would match nothing.
      psql -qX -d "$db" -c "ALTER TABLE orders_$1 DISABLE TRIGGER USER" \
        -c "INSERT INTO orders_$1 (id, customer_id, total, items, note) SELECT g, g, g * 0.37, g % 9, 'x' FROM generate_series(1, 100000) g" \
        -c "ALTER TABLE orders_$1 ENABLE TRIGGER USER" >/dev/null
    fi
    psql -qX -d "$db" -c "VACUUM ANALYZE orders_$1" -c "CHECKPOINT" >/dev/null
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
            tps=$(pgtool pgbench -n -c "$c" -j "$c" -T "$SECS" -f "$tmp/${op}_$v.sql" "$(b1_db "$v")" 2>/dev/null | awk '/^tps/ {print int($3); exit}')
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
    for v in $bulk_variants; do
      times=()
      for i in 1 2 3; do
        reset "$v" insert
        if [ "$kind" = insert ]; then
          sql="INSERT INTO orders_$v (customer_id, total, items, note) SELECT g, g * 0.37, g % 9, 'bulk' FROM generate_series(1, $BULK_ROWS) g;"
        else
          sql="COPY orders_$v (customer_id, total, items, note) FROM '$tmp/rows.csv' WITH (FORMAT csv);"
        fi
        times+=("$({ echo '\timing on'; echo "$sql"; } | psql -qX -d "$(b1_db "$v")" 2>&1 | awk '/^Time:/ {print $2}')")
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
# install_edition db [edition]: pg_webhook ($EDITION unless named) in a
# fresh database, with http:// endpoint URLs allowed. The portable edition
# is installed as a managed service's application role would: the
# database's owner, no superuser (the benchmarks then run as postgres).
BENCH_OWNER=bench_owner
install_edition() {
  case "${2:-$EDITION}" in
    native)
      psql -qX -d "$1" -c "CREATE EXTENSION pg_webhook" -c "ALTER DATABASE $1 SET webhook.allow_http = on" >/dev/null ;;
    portable)
      psql -qX -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$BENCH_OWNER') THEN
                                CREATE ROLE $BENCH_OWNER LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; END IF; END \$\$" \
        -c "ALTER DATABASE $1 OWNER TO $BENCH_OWNER" >/dev/null
      "$WEBHOOKD" install --database-url "postgres://$BENCH_OWNER@127.0.0.1:$PORT/$1" >/dev/null
      psql -qX -U "$BENCH_OWNER" -d "$1" -c "UPDATE webhook.portable_settings SET allow_http = true" >/dev/null ;;
  esac
}
e2e_db() { # name urls max_in_flight → prints the secret
  fresh_db "$1" >/dev/null
  install_edition "$1"
  "$BENCH" setup --database-url "postgres://postgres@127.0.0.1:$PORT/$1" --url "$2" --max-in-flight "${3:-128}"
}
# Benchmark traffic stays on loopback: no proxy from the environment.
# (A command, not a function: `"${NOPROXY[@]}" cmd &` is the process itself.)
NOPROXY=(env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u all_proxy -u ALL_PROXY -u no_proxy -u NO_PROXY)
start_webhookd() { # db [extra args]
  local db=$1; shift
  "${NOPROXY[@]}" WEBHOOKD_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$WEBHOOKD" run \
    --allow-private-targets --concurrency 256 --batch 500 --metrics-addr "127.0.0.1:$((RPORT + 1))" "$@" \
    >>"$OUT/webhookd.log" 2>&1 &
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
b2() { each_edition b2_edition; }
b2_edition() {
  set_sync on
  secret=$(e2e_db bench_e2e "http://127.0.0.1:$RPORT/hook")
  "$BENCH" receive --port "$RPORT" --secret "$secret" &
  pids+=($!)
  cat >"$tmp/b2.sql" <<SQL
\set c random(1, 100000)
INSERT INTO bench_orders (customer_id, total, items, note) VALUES (:c, :c * 0.37, 3, 'b2');
SQL
  for c in $B2_CLIENTS; do
    say "B2 $EDITION edition, $c clients, synchronous_commit=on: NOTIFY wake-ups vs poll-only ($REPS x ${SECS}s)"
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
        tps=$(pgtool pgbench -n -c "$c" -j "$c" -T "$SECS" -f "$tmp/b2.sql" bench_e2e 2>/dev/null | awk '/^tps/ {print int($3); exit}')
        kill "$WEBHOOKD_PID"; wait "$WEBHOOKD_PID" 2>/dev/null || true
        emit "{\"bench\":\"B2\",\"edition\":\"$EDITION\",\"clients\":$c,\"mode\":\"$mode\",\"rep\":$rep,\"tps\":${tps:-0}}"
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
  each_edition b3_pg_webhook
  b3_baseline
}
b3_pg_webhook() {
  # The system's name in the results: pg_webhook (the native edition) or
  # pg_webhook_portable.
  local system=pg_webhook
  [ "$EDITION" = native ] || system=pg_webhook_$EDITION
  say "B3 $system: open-loop ramp, $ROWS_PER_TX rows per transaction, ${STEP_SECS}s per step"
  secret=$(e2e_db bench_e2e "http://127.0.0.1:$RPORT/hook")
  start_webhookd bench_e2e
  best=$(ramp "$system" sustained bench_e2e "$RATES" --secret "$secret" | tee >(cat >&2) | tail -1)
  echo "  highest sustained rate: $best events/s"
  # None sustained: latency at the ramp's first rate (as the baseline's).
  if [ "$best" = 0 ]; then best=$(echo "$RATES" | awk '{print $1}'); fi
  wait_idle bench_e2e "SELECT (SELECT count(*) FROM webhook.event_log) - (SELECT count(*) FROM webhook.delivery WHERE status = 'succeeded')"
  say "B4 $system: latency at 10/50/80 % of $best events/s (${LAT_SECS}s each)$([ "$system" != pg_webhook ] || echo "; B7 webhookd cost at 50 %")"
  for pct in 10 50 80; do
    rate=$((best * pct / 100)); [ "$rate" -ge 10 ] || rate=10
    t0=$(cpu_ticks "$WEBHOOKD_PID")
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/bench_e2e" --port "$RPORT" --rate "$rate" \
      --duration "${LAT_SECS}s" --rows-per-tx "$ROWS_PER_TX" --secret "$secret" --json "$RESULTS" \
      --tag bench=B4 --tag system="$system" --tag load_pct=$pct || true
    t1=$(cpu_ticks "$WEBHOOKD_PID")
    # webhookd's own cost (B7) does not depend on the edition: measured once.
    if [ "$pct" = 50 ] && [ "$system" = pg_webhook ]; then
      events=$((rate * LAT_SECS))
      cpu_us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / $events" | bc -l)
      emit "{\"bench\":\"B7\",\"phase\":\"steady\",\"rate\":$rate,\"events\":$events,\"cpu_us_per_event\":$cpu_us,\"rss_mb\":$(rss_mb "$WEBHOOKD_PID" VmRSS),\"rss_peak_mb\":$(rss_mb "$WEBHOOKD_PID" VmHWM)}"
      printf '  webhookd: %.1f us CPU per event, RSS %s MB\n' "$cpu_us" "$(rss_mb "$WEBHOOKD_PID" VmRSS)"
    fi
  done
  stop_bg
}
b3_baseline() {
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
  idle=$(pgtool pgbench -n -c 8 -j 8 -T "$PRODUCER_SECS" -f "$tmp/b5.sql" bench_backlog 2>/dev/null | awk '/^tps/ {print int($3); exit}')
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
  during=$(pgtool pgbench -n -c 8 -j 8 -T "$PRODUCER_SECS" -f "$tmp/b5.sql" bench_backlog 2>/dev/null | awk '/^tps/ {print int($3); exit}')
  echo "  producer during the drain: $during tps"
  wait "$drain" || true
  peak=$(rss_mb "$WEBHOOKD_PID" VmHWM)
  # Let the producer's own events finish, then measure what is left behind.
  for _ in $(seq 60); do
    [ "$(psql -XtA -d bench_backlog -c "SELECT count(*) FROM webhook.delivery WHERE status = 'pending'")" = 0 ] && break
    sleep 1
  done
  read -r outbox_mb dead <<<"$(psql -XtA -F' ' -d bench_backlog -c "SELECT (SELECT round(sum(pg_total_relation_size(c.oid)) / 1048576.0, 1) FROM pg_class c WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind = 'r'), (SELECT sum(n_dead_tup) FROM pg_stat_user_tables WHERE schemaname = 'webhook')")"
  stop_bg
  if [ -s "$tmp/b5.json" ]; then
    pybench b5 "$tmp/b5.json" "$RESULTS" "$idle" "$during" "$outbox_mb" "$dead" "$peak"
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

# ---------------------------------------------------------------------------
# Helpers of L, B9, B10 and B11. They use only the interface kept between
# releases (docs/interface.md: track, emit, create_endpoint, endpoint_secret,
# disable_endpoint, route, the views webhook.events and webhook.deliveries),
# so they measure any storage design, the baseline tree's as well.
# ---------------------------------------------------------------------------
q() { psql -XtAq -v ON_ERROR_STOP=1 -d "$@"; }
now_s() { date +%s.%N; }
calc() { printf '%.6f' "$(echo "$1" | bc -l)"; } # with a leading 0: JSON numbers
loadavg() { cut -d' ' -f1-3 /proc/loadavg; } # the machine is shared: recorded with each result
# The insert position: pg_current_wal_lsn() is the write position, which
# lags behind with synchronous_commit = off.
wal_lsn() { q postgres -c "SELECT pg_current_wal_insert_lsn()"; }
wal_flush() { q postgres -c "SET synchronous_commit = on" -c "SELECT pg_current_xact_id()" >/dev/null; } # for pg_waldump
wal_diff() { q postgres -c "SELECT pg_wal_lsn_diff('$1', '$2')"; }
checkpoints() { q postgres -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
plain_db() { # name: a fresh database with pg_webhook ($EDITION) and http:// endpoints allowed
  PGOPTIONS="-c client_min_messages=warning" fresh_db "$1" >/dev/null
  install_edition "$1"
}
succeeded() { q "$1" -c "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'"; }
undelivered() { q "$1" -c "SELECT (SELECT count(*) FROM webhook.events) - (SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded')"; }
wait_delivered() { # db timeout_s: until every event (one endpoint each) succeeded
  local end=$(($(date +%s) + $2))
  while [ "$(undelivered "$1")" -gt 0 ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "  (events still undelivered after $2 s)"; return 1; }
    sleep 0.2
  done
}
# webhookd as a user runs it: default concurrency, batch and poll interval.
start_webhookd_user() { # db [extra args]
  local db=$1; shift
  "${NOPROXY[@]}" WEBHOOKD_LOG=warn DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$db" "$WEBHOOKD" run \
    --allow-private-targets --metrics-addr "127.0.0.1:$((RPORT + 1))" "$@" >>"$OUT/webhookd.log" 2>&1 &
  WEBHOOKD_PID=$!
  pids+=("$WEBHOOKD_PID")
  sleep 0.3
}
# pgwh-bench drain in the background; its CPU time (user + system, s) is
# written to $1.times when it exits.
drain_bg() { # times-file drain-args...
  local f=$1; shift
  (
    "$BENCH" drain "$@" &
    c=$!
    trap 'kill $c 2>/dev/null' TERM
    wait $c && rc=0 || rc=$?
    times >"$f" # its second line: the children's user and system time
    exit $rc
  ) &
  DRAIN_PID=$!
  pids+=("$DRAIN_PID")
  sleep 0.5
}
times_s() { # the output of `times` → the children's CPU seconds
  awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] } print s }' "$1" 2>/dev/null || echo 0
}
# CPU time (clock ticks) of every process of the cluster: the postmaster,
# its live children, and (the postmaster's cutime/cstime) those that ended.
pg_cpu_ticks() {
  local pm
  pm=$(head -1 "$DIR/data/postmaster.pid")
  {
    awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat"
    for p in $(pgrep -P "$pm"); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done
  } | awk '{s += $1} END {print s}'
}
ticks_of() { # pids... → summed utime+stime ticks of those still running
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done | awk '{s += $1} END {print s + 0}'
}
TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# L liveness: an event an endpoint wants, committed behind L_ROWS events
# nobody wants. (a) the endpoint wants only probe.ping; (b) endpoint B,
# subscribed to the table's events, is disabled while they commit (and
# stays disabled), A wants probe.ping; (c) routing throughput of events
# that match nothing: webhook.route() until it returns 0, no webhookd.
# ---------------------------------------------------------------------------
liveness() { # a | b | c
  local v=$1 db=bench_live_$1 a b secret t0 ins_s
  set_sync off
  plain_db "$db"
  q "$db" -c "CREATE TABLE live_rows (id bigserial PRIMARY KEY, n int NOT NULL, note text)" \
    -c "SELECT webhook.track('live_rows', '{insert}')" >/dev/null
  a=$(q "$db" -c "SELECT webhook.create_endpoint('http://127.0.0.1:$RPORT/a', '{probe.ping}')")
  secret=$(q "$db" -c "SELECT webhook.endpoint_secret($a)")
  if [ "$v" = b ]; then
    b=$(q "$db" -c "SELECT webhook.create_endpoint('http://127.0.0.1:$RPORT/b', '{live_rows.insert}')")
    q "$db" -c "SELECT webhook.disable_endpoint($b)" >/dev/null
  fi
  local insert="INSERT INTO live_rows (n, note) SELECT g, 'nobody wants this' FROM generate_series(1, $L_ROWS) g"

  if [ "$v" = c ]; then
    say "Lc routing throughput: $L_ROWS events no endpoint wants, webhook.route() until it returns 0 (no webhookd)"
    q "$db" -c "$insert" >/dev/null
    local ms=0 calls=0 routed=0 done=0 r started
    started=$(date +%s)
    while [ "$done" = 0 ] && [ $(($(date +%s) - started)) -lt 600 ]; do
      r=$({ echo '\timing on'; for _ in $(seq 20); do echo 'SELECT webhook.route();'; done; } | psql -XtAq -d "$db" | awk '
        /^Time:/ { if (!done) { ms += $2; calls++; if (z) done = 1 } next }
        NF { if (!done) { routed += $1; if ($1 == 0) z = 1 } }
        END { print ms + 0, calls + 0, routed + 0, done + 0 }')
      read -r m c n d <<<"$r"
      ms=$(calc "$ms + $m"); calls=$((calls + c)); routed=$((routed + n)); done=$d
    done
    local rate
    rate=$(calc "$L_ROWS * 1000 / $ms")
    emit "{\"load\":\"$(loadavg)\",\"bench\":\"L\",\"variant\":\"c\",\"rows\":$L_ROWS,\"calls\":$calls,\"routed\":$routed,\"seconds\":$(calc "$ms / 1000"),\"events_per_s\":$rate,\"complete\":$([ "$done" = 1 ] && echo true || echo false)}"
    printf '  %d events routed in %d calls, %.2f s of statements: %.0f events/s%s\n' "$routed" "$calls" \
      "$(calc "$ms / 1000")" "$rate" "$([ "$done" = 1 ] || echo ' (gave up after 600 s)')"
    return
  fi

  if [ "$v" = a ]; then
    say "La liveness: $L_ROWS rows nobody wants (one INSERT ... SELECT), then one probe.ping; commit -> receipt"
  else
    say "Lb liveness: $L_ROWS rows for endpoint B while it is disabled, then one probe.ping for A; commit -> receipt"
  fi
  start_webhookd_user "$db"
  "${NOPROXY[@]}" "$WEBHOOKD" listen --addr "127.0.0.1:$RPORT" --secret "$secret" --max 1 >"$tmp/listen.out" 2>&1 &
  local lpid=$!
  pids+=("$lpid")
  sleep 0.3
  t0=$(now_s)
  q "$db" -c "$insert" >/dev/null
  ins_s=$(calc "$(now_s) - $t0")
  local committed_at got=0 received_at latency
  committed_at=$(q "$db" -c "SELECT webhook.emit('probe.ping', '{\"probe\": 1}')" -c "SELECT extract(epoch FROM clock_timestamp())" | tail -1)
  if timeout "$L_TIMEOUT" tail -s 0.01 --pid="$lpid" -f /dev/null && wait "$lpid"; then got=1; fi
  received_at=$(now_s)
  if [ "$got" = 1 ]; then
    latency=$(calc "$received_at - $committed_at")
    printf '  insert of %d rows %.2f s; probe.ping arrived %.3f s after its commit\n' "$L_ROWS" "$ins_s" "$latency"
  else
    latency=null
    printf '  insert of %d rows %.2f s; probe.ping not arrived after %d s (>%d s)\n' "$L_ROWS" "$ins_s" "$L_TIMEOUT" "$L_TIMEOUT"
  fi
  local routed
  routed=$(q "$db" -c "SELECT count(*) FROM webhook.deliveries")
  emit "{\"load\":\"$(loadavg)\",\"bench\":\"L\",\"variant\":\"$v\",\"rows\":$L_ROWS,\"insert_s\":$ins_s,\"latency_s\":$latency,\"timeout_s\":$L_TIMEOUT,\"arrived\":$([ "$got" = 1 ] && echo true || echo false),\"deliveries_at_end\":$routed}"
  stop_bg
}

# ---------------------------------------------------------------------------
# B9 WAL per delivered event: B9_EVENTS events committed while webhookd is
# stopped, then drained to a fast verifying receiver; the LSN delta over the
# drain divided by the events. Capture: the LSN delta of the same INSERTs
# into the tracked table minus into an untracked copy.
# ---------------------------------------------------------------------------
b9_insert() { # db table n → WAL bytes of n rows in transactions of 10,000
  local l0 l1 i
  q "$1" -c "CHECKPOINT"
  l0=$(wal_lsn)
  for ((i = 0; i < $3; i += 10000)); do
    q "$1" -c "INSERT INTO $2 (customer_id, total, items, note) SELECT g, g * 0.37, g % 9, 'b9' FROM generate_series(1, least(10000, $3 - $i)) g"
  done
  l1=$(wal_lsn)
  wal_flush
  pgtool pg_waldump --stats -p "$DIR/data/pg_wal" -s "$l0" -e "$l1" >"$tmp/b9.$2.waldump" 2>/dev/null || true
  wal_diff "$l1" "$l0"
}
b9() {
  local n=$B9_EVENTS db=bench_wal secret plain tracked l0 l1 ck0 ck1
  # A cluster of its own: no other database's autovacuum or dispatcher in
  # its WAL. Every helper below reads PORT, PGPORT and DIR. Autovacuum is
  # off so that the figures do not depend on when it runs; the VACUUM of
  # what the drain left behind is measured on its own afterwards.
  local PORT=$B9_PORT DIR=$DIR-b9
  local -x PGPORT=$B9_PORT
  scripts/cluster.sh stop "$DIR" && rm -rf "$DIR"
  scripts/cluster.sh start "$DIR" "$PORT" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
    "shared_buffers = 512MB" "synchronous_commit = off" "autovacuum = off" >/dev/null
  set_sync off
  say "B9 WAL per delivered event: $n events committed with webhookd stopped, then drained (synchronous_commit=off, a cluster of its own)"
  secret=$(PGOPTIONS="-c client_min_messages=warning" e2e_db "$db" "http://127.0.0.1:$RPORT/hook")
  q "$db" -c "CREATE TABLE bench_orders_plain (LIKE bench_orders INCLUDING ALL)"
  plain=$(b9_insert "$db" bench_orders_plain "$n")
  tracked=$(b9_insert "$db" bench_orders "$n")
  # No checkpoint between capture and delivery (none is due: max_wal_size
  # 4GB, checkpoint_timeout 30min); the number of checkpoints is recorded.
  ck0=$(checkpoints)
  l0=$(wal_lsn)
  drain_bg "$tmp/b9.times" --port "$RPORT" --count "$n" --secret "$secret" --timeout 900s --json "$tmp/b9.json" --tag bench=B9
  start_webhookd "$db"
  wait "$DRAIN_PID" || echo "  (the receiver did not get every event)"
  wait_delivered "$db" 120 || true
  sleep 2 # outcomes and attempts written after the last receipt
  l1=$(wal_lsn)
  ck1=$(checkpoints)
  stop_bg
  local vacuum v0
  v0=$(wal_lsn)
  printf '%s\n' "SELECT format('VACUUM %I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'webhook'" '\gexec' |
    q "$db" >/dev/null
  vacuum=$(wal_diff "$(wal_lsn)" "$v0")
  wal_flush
  pgtool pg_waldump --stats -p "$DIR/data/pg_wal" -s "$l0" -e "$l1" >"$tmp/b9.waldump" 2>/dev/null || true
  if [ -n "${B9_KEEP:-}" ]; then mkdir -p "$B9_KEEP" && cp "$tmp"/b9*.waldump "$B9_KEEP"/; fi # pg_waldump --stats of each phase
  pybench b9 "$tmp/b9.json" "$RESULTS" "$n" "$plain" "$tracked" "$(wal_diff "$l1" "$l0")" "$((ck1 - ck0))" "$tmp/b9.waldump" \
    "$(times_s "$tmp/b9.times")" "$vacuum"
  scripts/cluster.sh stop "$DIR" && rm -rf "$DIR"
}

# ---------------------------------------------------------------------------
# B10 many endpoints: B10_EVENTS events spread evenly over N endpoints, each
# subscribed to its own event type (webhook.emit), committed with webhookd
# stopped, then drained by one webhookd to one receiver (paths differ).
# ---------------------------------------------------------------------------
b10() {
  set_sync off
  local db=bench_many n secret first t0 t1 w0 w1 p0 p1 complete got secs rate rcv
  for n in $B10_NS; do
    say "B10 $B10_EVENTS events over $n endpoints (one event type each, max_in_flight $B10_MAX_IN_FLIGHT), one webhookd"
    plain_db "$db"
    first=$(q "$db" -c "SELECT webhook.create_endpoint('http://127.0.0.1:$RPORT/e1', '{b10.t1}', max_in_flight => $B10_MAX_IN_FLIGHT)")
    secret=$(q "$db" -c "SELECT webhook.endpoint_secret($first)")
    q "$db" -c "SELECT count(webhook.create_endpoint('http://127.0.0.1:$RPORT/e' || k, ARRAY['b10.t' || k], '$secret', max_in_flight => $B10_MAX_IN_FLIGHT)) FROM generate_series(2, $n) k" >/dev/null
    q "$db" -c "SELECT count(webhook.emit('b10.t' || (1 + g % $n), jsonb_build_object('new', jsonb_build_object('id', g)))) FROM generate_series(1, $B10_EVENTS) g" >/dev/null
    q "$db" -c "VACUUM ANALYZE" >/dev/null
    rm -f "$tmp/b10.json"
    drain_bg "$tmp/b10.times" --port "$RPORT" --count "$B10_EVENTS" --secret "$secret" --timeout "${B10_TIMEOUT}s" \
      --json "$tmp/b10.json" --tag bench=B10 --tag endpoints="$n"
    p0=$(pg_cpu_ticks); t0=$(now_s)
    start_webhookd "$db"
    w0=$(ticks_of "$WEBHOOKD_PID")
    if wait "$DRAIN_PID"; then complete=true; else complete=false; fi
    t1=$(now_s); p1=$(pg_cpu_ticks); w1=$(ticks_of "$WEBHOOKD_PID")
    if [ "$complete" = true ] && [ -s "$tmp/b10.json" ]; then
      read -r secs rate <<<"$(pybench last-fields "$tmp/b10.json" seconds events_per_s)"
      got=$B10_EVENTS
    else
      got=$(succeeded "$db")
      secs=$(calc "$t1 - $t0")
      rate=$(calc "$got / $secs")
    fi
    stop_bg
    rcv=$(times_s "$tmp/b10.times")
    local wall
    wall=$(calc "$t1 - $t0")
    emit "{\"load\":\"$(loadavg)\",\"bench\":\"B10\",\"endpoints\":$n,\"events\":$B10_EVENTS,\"delivered\":$got,\"complete\":$complete,\"seconds\":$secs,\"events_per_s\":$rate,\"receiver_cores\":$(calc "$rcv / $secs"),\"webhookd_cores\":$(calc "($w1 - $w0) / $TCK / $wall"),\"postgres_cores\":$(calc "($p1 - $p0) / $TCK / $wall"),\"max_in_flight\":$B10_MAX_IN_FLIGHT}"
    printf '  %s events/s (%d of %d in %.1f s%s); CPU in cores: receiver %.2f, webhookd %.2f, PostgreSQL %.2f\n' \
      "$(printf '%.0f' "$rate")" "$got" "$B10_EVENTS" "$secs" "$([ "$complete" = true ] || echo ", gave up after ${B10_TIMEOUT} s")" \
      "$(calc "$rcv / $secs")" "$(calc "($w1 - $w0) / $TCK / $wall")" "$(calc "($p1 - $p0) / $TCK / $wall")"
  done
}

# ---------------------------------------------------------------------------
# B11 PostgreSQL CPU at ordinary rates: pgbench at B11_RATE single-row
# commits/s into a tracked table for B11_SECS, webhookd (as a user runs it)
# delivering to a fast verifying receiver. CPU of every process of the
# cluster over the window (producer's inserts included) per delivered
# event; the share of webhookd's sessions; calls of webhook.* functions.
# ---------------------------------------------------------------------------
b11_state() { # db → JSON: succeeded deliveries, webhook.* function stats, webhookd's sessions
  q "$1" -c "SELECT json_build_object(
      'succeeded', (SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'),
      'functions', (SELECT coalesce(json_object_agg(funcname, json_build_array(calls, total_time, self_time)), '{}')
                      FROM pg_stat_user_functions WHERE schemaname = 'webhook'),
      'sessions', (SELECT coalesce(json_object_agg(pid, application_name), '{}')
                     FROM pg_stat_activity WHERE application_name LIKE 'webhookd%' AND datname = current_database()))"
}
b11() { each_edition b11_edition; }
b11_edition() {
  local db=bench_cpu rate=$B11_RATE secs=$B11_SECS secret
  set_sync "$B11_SYNC"
  q postgres -c "ALTER SYSTEM SET track_functions = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
  say "B11 $EDITION edition, PostgreSQL CPU per delivered event: pgbench at $rate single-row commits/s, $B11_CLIENTS clients, ${secs}s, synchronous_commit=$B11_SYNC"
  secret=$(PGOPTIONS="-c client_min_messages=warning" e2e_db "$db" "http://127.0.0.1:$RPORT/hook" 16)
  "$BENCH" receive --port "$RPORT" --secret "$secret" &
  local rpid=$!
  pids+=("$rpid")
  start_webhookd_user "$db"
  cat >"$tmp/b11.sql" <<SQL
\set c random(1, 100000)
INSERT INTO bench_orders (customer_id, total, items, note) VALUES (:c, :c * 0.37, 3, 'b11');
SQL
  pgtool pgbench -n -c "$B11_CLIENTS" -j 2 -R "$rate" -T 3 -f "$tmp/b11.sql" "$db" >/dev/null 2>&1 # warm-up
  wait_delivered "$db" 60 || true
  sleep 11 # idle backends flush their function statistics within 10 s
  b11_state "$db" >"$tmp/b11.before"
  local wpids c0 c1 wb0 wb1 wd0 wd1 r0 r1 t0 t1 prod_pids prod_ticks=0 tx
  wpids=$(pybench b11-sessions "$tmp/b11.before")
  declare -A wt0
  for p in $wpids; do wt0[$p]=$(ticks_of "$p"); done
  c0=$(pg_cpu_ticks); wd0=$(ticks_of "$WEBHOOKD_PID"); r0=$(ticks_of "$rpid"); t0=$(now_s)
  pgtool pgbench -n -c "$B11_CLIENTS" -j 2 -R "$rate" -T "$secs" -f "$tmp/b11.sql" "$db" >"$tmp/b11.pgbench" 2>&1 &
  local pgb=$!
  # The producer's backends, sampled 1 s before the end (they exit with it).
  sleep $((secs - 1))
  prod_pids=$(q "$db" -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = 'pgbench'")
  prod_ticks=$(ticks_of $prod_pids)
  wait "$pgb" || true
  wait_delivered "$db" 60 || true
  t1=$(now_s); c1=$(pg_cpu_ticks); wd1=$(ticks_of "$WEBHOOKD_PID"); r1=$(ticks_of "$rpid")
  local wsess="{"
  for p in $wpids; do wsess+="\"$p\":$(($(ticks_of "$p") - ${wt0[$p]})),"; done
  wsess="${wsess%,}}"
  tx=$(awk '/number of transactions actually processed/ {print $NF; exit}' "$tmp/b11.pgbench" | cut -d/ -f1)
  sleep 11
  b11_state "$db" >"$tmp/b11.after"
  stop_bg
  set_sync off
  pybench b11 "$RESULTS" "$tmp/b11.before" "$tmp/b11.after" "$wsess" "$TCK" "$((c1 - c0))" "$((wd1 - wd0))" "$((r1 - r0))" \
    "$prod_ticks" "$(calc "$t1 - $t0")" "${tx:-0}" "$rate" "$secs" "$B11_SYNC" "$B11_CLIENTS" "$EDITION"
}

# ---------------------------------------------------------------------------
# B8 retention soak: B8_RATE events/s for B8_SECS (open loop, ROWS_PER_TX
# rows per transaction) with webhook.set_retention(B8_RETENTION, an eighth
# of it) and webhookd calling webhook.maintain() every B8_MAINTAIN, on the
# main cluster (autovacuum on). The load is consecutive `pgwh-bench step`s
# of B8_SAMPLE s each (one JSON line of percentiles per run, no live
# figures): between two, the producer pauses while a step waits for its
# last events and exits and the next one connects (gap_s of each sample,
# well under a second). In the middle of each step: the total size of
# schema webhook (tables, indexes, TOAST), its dead and live tuples, the
# generations and the undelivered events; with that step's p50/p99 commit →
# receipt, one sample line (with the step's 5 s timeline of p50/p99, its
# times counted from the soak's start). Flat: max/min of the size over the
# last half of the samples within B8's goal (bench/pgwh_bench/goals.py).
# ---------------------------------------------------------------------------
b8_sample() { # db → bytes dead live generations oldest-k newest-started-k undelivered
  q "$1" -F' ' -c "SELECT
      (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
        WHERE c.relnamespace = 'webhook'::regnamespace AND c.relkind IN ('r', 'p')),
      (SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'webhook'),
      (SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'webhook'),
      (SELECT count(*) FROM webhook.generation),
      (SELECT min(k) FROM webhook.generation),
      (SELECT max(k) FROM webhook.generation WHERE started_at IS NOT NULL),
      (SELECT count(*) FROM webhook.event_log) - (SELECT count(*) FROM webhook.delivery WHERE status = 'succeeded')"
}
b8_record() { # i: step i's database sample and percentiles → one line in RESULTS and on stdout
  pybench b8-record "$1" "$B8_SAMPLE" "$tmp/b8.db.$1" "$tmp/b8.wall.$1" "$tmp/b8.step.$1" "$tmp/b8.step.$1.out" \
    "$RESULTS" "$tmp/b8.samples"
}
b8() {
  local db=bench_soak secret gi av n i t0 ts spid
  n=$((B8_SECS / B8_SAMPLE)); [ "$n" -ge 2 ] || n=2
  set_sync off
  av=$(q postgres -c "SHOW autovacuum")
  [ "$av" = on ] || echo "  (autovacuum is $av in $DIR: dead tuples will accumulate)"
  secret=$(PGOPTIONS="-c client_min_messages=warning" e2e_db "$db" "http://127.0.0.1:$RPORT/hook")
  gi="interval '$B8_RETENTION' / 8"
  [ -z "$B8_GENERATION" ] || gi="interval '$B8_GENERATION'"
  q "$db" -c "SELECT webhook.set_retention(interval '$B8_RETENTION', $gi)" >/dev/null
  gi=$(q "$db" -c "SELECT generation_interval FROM webhook.settings")
  say "B8 retention soak: $B8_RATE events/s for $((n * B8_SAMPLE)) s ($ROWS_PER_TX rows/tx), retention $B8_RETENTION," \
    "generations of $gi, maintain() every $B8_MAINTAIN, autovacuum $av; one sample per ${B8_SAMPLE} s step"
  start_webhookd "$db" --maintain-interval "$B8_MAINTAIN"
  : >"$tmp/b8.samples"
  t0=$(now_s)
  for ((i = 1; i <= n; i++)); do
    ts=$(now_s)
    "$BENCH" step --database-url "postgres://postgres@127.0.0.1:$PORT/$db" --port "$RPORT" --rate "$B8_RATE" \
      --duration "${B8_SAMPLE}s" --rows-per-tx "$ROWS_PER_TX" --secret "$secret" --settle "$B8_SETTLE" \
      --json "$tmp/b8.step.$i" --tag bench=B8 >"$tmp/b8.step.$i.out" 2>&1 &
    spid=$!
    pids+=("$spid")
    # The previous step's line is written while this one runs.
    if [ "$i" -gt 1 ]; then b8_record $((i - 1)); fi
    sleep "$(awk -v t="$ts" -v now="$(now_s)" -v d="$B8_SAMPLE" 'BEGIN { s = t + d / 2 - now; print (s > 0 ? s : 0) }')"
    echo "$(calc "$(now_s) - $t0") $(b8_sample "$db") $(loadavg)" >"$tmp/b8.db.$i"
    wait "$spid" || true
    pids=("$WEBHOOKD_PID")
    echo "$(calc "$ts - $t0") $(calc "$(now_s) - $ts")" >"$tmp/b8.wall.$i"
  done
  b8_record "$n"
  stop_bg
  pybench b8-summary "$tmp/b8.samples" "$RESULTS" "$B8_RATE" "$B8_SAMPLE" "$B8_RETENTION" "$gi" "$B8_MAINTAIN" "$ROWS_PER_TX" "$av"
}

for b in $ONLY; do
  case "$b" in
    B1) b1 ;; B2) b2 ;; B3 | B4 | B7) b3 ;; B5) b5 ;; B6) b6 ;;
    L) liveness a; liveness b; liveness c ;; La) liveness a ;; Lb) liveness b ;; Lc) liveness c ;;
    B8) b8 ;; B9) b9 ;; B10) b10 ;; B11) b11 ;;
    *) echo "unknown benchmark $b" >&2; exit 2 ;;
  esac
done

say "report"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! $PY -c "import matplotlib" 2>/dev/null; then
  echo "no matplotlib for $PY (scripts/setup.sh bench installs it): no report; results in $RESULTS"
  exit 0
fi
SPLICE=${SPLICE:-auto}
if [ "$SPLICE" = auto ]; then
  if [ "$QUICK" = 0 ] && [ "$OUT" = target/bench ]; then SPLICE=1; else SPLICE=0; fi
fi
if [ "$SPLICE" != 1 ]; then
  pybench report "$RESULTS" --plots "$OUT/plots" >"$OUT/report.md"
  echo "report: $OUT/report.md, plots in $OUT/plots (BENCHMARKS.md untouched)"
else
  pybench report "$RESULTS" --plots docs/bench --splice BENCHMARKS.md
  echo "BENCHMARKS.md and docs/bench/*.png updated from $RESULTS"
fi
