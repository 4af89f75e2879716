#!/usr/bin/env bash
# A relocatable "before" tree: PostgreSQL 15 with the pg_webhook of git REF,
# plus that ref's webhookd (and pgwh-bench), so a benchmark can measure
# before and after in the same run while the system PostgreSQL gets new
# builds of the extension.
#
#   scripts/baseline.sh REF OUTDIR
#
# OUTDIR/usr/lib/postgresql/15   copy of Debian's, with REF's pg_webhook.so
# OUTDIR/usr/share/postgresql/15 copy of Debian's, with REF's control file and
#                                scripts (any other pg_webhook file removed)
# OUTDIR/webhookd                REF's `cargo build --release -p webhookd`
# OUTDIR/pgwh-bench              REF's benchmark driver, when REF has one
# OUTDIR/BASELINE                the commit it was built from
#
# PostgreSQL finds its share and lib directories relative to its binary, so
#   PGBIN=OUTDIR/usr/lib/postgresql/15/bin scripts/cluster.sh start DIR PORT
# runs a cluster on REF's extension. Idempotent: nothing is done when OUTDIR
# already records the same commit. REF is checked out into a temporary git
# worktree; the build shares CARGO_TARGET_DIR (default target/baseline-build)
# between runs. Nothing is installed into the system's directories.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ref=${1:?usage: scripts/baseline.sh REF OUTDIR}
out=$(realpath -m "${2:?usage: scripts/baseline.sh REF OUTDIR}")
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/baseline-build}

commit=$(git rev-parse --verify --quiet "$ref^{commit}") || {
  echo "baseline: no commit named $ref" >&2
  exit 2
}
if [ -f "$out/BASELINE" ] && [ "$(awk '{print $1; exit}' "$out/BASELINE")" = "$commit" ]; then
  echo "baseline: $out already holds $commit ($ref)"
  exit 0
fi

pglib=$("$PG_CONFIG" --pkglibdir)   # /usr/lib/postgresql/15/lib
pgshare=$("$PG_CONFIG" --sharedir)  # /usr/share/postgresql/15
pgbin=$("$PG_CONFIG" --bindir)      # /usr/lib/postgresql/15/bin
pgprefix=$(dirname "$pgbin")        # /usr/lib/postgresql/15

work=$(mktemp -d "${TMPDIR:-/tmp}/pgwh-baseline.XXXXXX")
wt=$work/src
stage=$out.new
cleanup() {
  git worktree remove --force "$wt" >/dev/null 2>&1 || true
  rm -rf "$work" "$stage"
}
trap cleanup EXIT

echo "baseline: $ref = $commit into $out (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
git worktree add --detach --quiet "$wt" "$commit"

# 1. The extension of REF, packaged (not installed) by cargo-pgrx.
pkg=$work/pkg
(cd "$wt/extension" && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$pkg")
so=$(find "$pkg" -name 'pg_webhook.so' -print -quit)
control=$(find "$pkg" -name 'pg_webhook.control' -print -quit)
[ -n "$so" ] && [ -n "$control" ] || { echo "baseline: cargo pgrx package made no pg_webhook.so/.control under $pkg" >&2; exit 1; }

# 2. webhookd (and the benchmark driver, if REF has one) of REF.
(cd "$wt" && cargo build --release -q -p webhookd)
has_bench=0
if grep -qs 'name = "pg_webhook_bench"' "$wt/bench/Cargo.toml"; then
  (cd "$wt" && cargo build --release -q -p pg_webhook_bench) && has_bench=1
fi

# 3. The relocatable PostgreSQL: Debian's files, with every pg_webhook file
#    the system directories hold now replaced by REF's.
rm -rf "$stage"
mkdir -p "$stage$(dirname "$pgprefix")" "$stage$(dirname "$pgshare")"
cp -a "$pgprefix" "$stage$pgprefix"
cp -a "$pgshare" "$stage$pgshare"
if [ "$pglib" != "$pgprefix/lib" ]; then
  mkdir -p "$stage$(dirname "$pglib")"
  cp -a "$pglib" "$stage$pglib"
fi
rm -f "$stage$pglib"/pg_webhook*.so "$stage$pgshare"/extension/pg_webhook*
rm -rf "$stage$pglib"/bitcode/pg_webhook*
install -m 755 "$so" "$stage$pglib/pg_webhook.so"
for f in "$(dirname "$control")"/pg_webhook*; do
  install -m 644 "$f" "$stage$pgshare/extension/"
done
install -m 755 "$CARGO_TARGET_DIR/release/webhookd" "$stage/webhookd"
if [ "$has_bench" = 1 ]; then
  install -m 755 "$CARGO_TARGET_DIR/release/pgwh-bench" "$stage/pgwh-bench"
fi
echo "$commit $ref $(git log -1 --format='%cI %s' "$commit")" >"$stage/BASELINE"
# The server runs as `postgres`: every directory on the way must be readable.
chmod -R a+rX "$stage"

rm -rf "$out"
mv "$stage" "$out"
echo "baseline: ready: PGBIN=$out$pgbin WEBHOOKD=$out/webhookd"
ls "$out$pgshare/extension/" | grep '^pg_webhook' | sed 's/^/  /'
