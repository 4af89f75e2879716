#!/usr/bin/env bash
# `make deb`: Debian packages of pg_webhook, into target/deb/:
#
#   scripts/deb.sh extension N   # postgresql-N-pg-webhook_<version>_<arch>.deb
#                                # from `make package PG=N`'s output
#   scripts/deb.sh webhookd      # webhookd_<version>_<arch>.deb
#                                # from `make webhookd`'s target/release/webhookd
#
# Built with dpkg-deb from the templates in deploy/debian/ (control files,
# the systemd unit, its environment file, maintainer scripts, the man
# page, lintian overrides). Depends come from dpkg-shlibdeps, run where
# the binary was linked: the extension for 15 and webhookd on this host
# (Debian 12), the extension for 17 and 18 in their build roots
# (scripts/pg-root.sh), so each names the C library its .so needs. One
# webhookd package serves every version: linked against Debian 12's C
# library, it runs on 13 and unstable as well.
#
# PG_PACKAGE=dir and WEBHOOKD=path take another build; DEB_OUT another
# output directory; DEB_MAINTAINER another Maintainer. Files get the time
# of the last commit (SOURCE_DATE_EPOCH), so a rebuild of the same inputs
# is the same package.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

usage() { echo "usage: scripts/deb.sh extension N | webhookd" >&2; exit 2; }

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$VERSION" ] || { echo "deb: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
ARCH=$(dpkg --print-architecture)
OUT=${DEB_OUT:-target/deb}
MAINTAINER=${DEB_MAINTAINER:-pg_webhook maintainers <maintainers@users.noreply.r-seed-cb316b58.example>}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)
fi
export SOURCE_DATE_EPOCH
TEMPLATES=deploy/debian

for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || { echo "deb: $tool is missing (apt install dpkg-dev binutils)" >&2; exit 1; }
done

# fill TEMPLATE KEY=VALUE...: the template with each @KEY@ replaced.
fill() {
  local template=$1
  shift
  python3 - "$template" "$@" <<'PY'
import sys
text = open(sys.argv[1]).read()
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    text = text.replace(f"@{k}@", v)
import re
left = re.findall(r"@[A-Z_]+@", text)
if left:
    sys.exit(f"deb: {sys.argv[1]}: {', '.join(sorted(set(left)))} left unfilled")
sys.stdout.write(text)
PY
}

# crates CARGO_TREE_ARGS...: the third-party crates a binary links, one
# " name version (license)" line each, for the copyright file.
crates() {
  cargo tree --offline --locked -e normal,no-proc-macro --prefix none --no-dedupe --format '{p}|{l}' "$@" |
    grep -v ' (/' | sort -u | awk -F'|' '{ split($1, p, " "); printf " %s %s (%s)\n", p[1], substr(p[2], 2), ($2 == "" ? "license not stated" : $2) }'
}

# stage_doc PKG ROOT BINARY CRATES: /usr/share/doc/PKG/{copyright,changelog.gz}.
stage_doc() {
  local pkg=$1 root=$2 binary=$3 crate_list=$4 doc=$2/usr/share/doc/$1
  mkdir -p "$doc"
  fill "$TEMPLATES/copyright.in" MAINTAINER="$MAINTAINER" YEAR="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)" \
    BINARY="$binary" CRATES="$crate_list" >"$doc/copyright"
  # A native package (the version has no Debian revision): the Debian
  # changelog is changelog.gz.
  fill "$TEMPLATES/changelog.in" VERSION="$VERSION" MAINTAINER="$MAINTAINER" \
    DATE="$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$doc/changelog.gz"
  chmod 0644 "$doc/copyright" "$doc/changelog.gz"
}

# overrides TEMPLATE PKG ROOT: the lintian overrides of PKG (each tag
# with the reason it is not fixed), where lintian reads them.
overrides() {
  [ -s "$1" ] || return 0
  mkdir -p "$3/usr/share/lintian/overrides"
  fill "$1" PACKAGE="$2" >"$3/usr/share/lintian/overrides/$2"
  chmod 0644 "$3/usr/share/lintian/overrides/$2"
}

# shlibdeps BUILD_DIR FILE [RUN...]: "libc6 (>= x), ..." for FILE (a path
# under BUILD_DIR/debian/<pkg>/), by dpkg-shlibdeps run through RUN (the
# root FILE was linked in). Warnings about symbols found in no library are
# off for the extension: a server module leaves the server's own
# symbols undefined by design.
shlibdeps() {
  local dir=$1 file=$2 warn=$3
  shift 3
  local out
  out=$("$@" sh -c 'cd "$1" && dpkg-shlibdeps -O --warnings="$3" -e"$2"' sh "$dir" "${file#"$dir"/}" "$warn")
  out=${out#shlibs:Depends=}
  [ -n "$out" ] || { echo "deb: dpkg-shlibdeps found no dependency of $file" >&2; exit 1; }
  echo "$out"
}

# build PKG DIR: DIR/debian/PKG (with DEBIAN/control) into $OUT.
build() {
  local pkg=$1 dir=$2 root=$2/debian/$1 deb
  # md5sums of every file outside DEBIAN, as dpkg verifies them.
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r md5sum) \
    >"$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/md5sums"
  find "$root" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  mkdir -p "$OUT"
  deb=$OUT/${pkg}_${VERSION}_${ARCH}.deb
  dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
  echo "deb: $deb, $(($(stat -c %s "$deb") / 1024)) KiB"
}

# installed_size ROOT: KiB of everything but DEBIAN, counted as
# dpkg-gencontrol does (each file rounded up to a KiB).
installed_size() {
  find "$1" -path "$1/DEBIAN" -prune -o \( -type f -o -type l \) -printf '%s\n' |
    awk '{ s += int(($1 + 1023) / 1024) } END { print s + 0 }'
}

new_build_dir() { # new_build_dir PKG: an empty DIR with DIR/debian/control
  local dir=$OUT/build/$1
  rm -rf "$dir"
  mkdir -p "$dir/debian/$1/DEBIAN"
  # dpkg-shlibdeps reads the source's debian/control.
  printf 'Source: pg-webhook\n\nPackage: %s\nArchitecture: any\n' "$1" >"$dir/debian/control"
  echo "$dir"
}

extension() {
  local pg=$1 pkg=postgresql-$1-pg-webhook src dir root so depends
  case "$pg" in "" | *[!0-9]*) usage ;; esac
  src=${PG_PACKAGE:-target/pg$pg/release/pg_webhook-pg$pg}
  [ -f "$src/usr/share/postgresql/$pg/extension/pg_webhook.control" ] && [ -f "$src/usr/lib/postgresql/$pg/lib/pg_webhook.so" ] ||
    { echo "deb: no extension package for PostgreSQL $pg in $src: run make package PG=$pg first" >&2; exit 1; }
  dir=$(new_build_dir "$pkg")
  dir=$(realpath "$dir")
  root=$dir/debian/$pkg
  mkdir -p "$root/usr/lib/postgresql/$pg/lib" "$root/usr/share/postgresql/$pg/extension"
  so=$root/usr/lib/postgresql/$pg/lib/pg_webhook.so
  install -m 0644 "$src/usr/lib/postgresql/$pg/lib/pg_webhook.so" "$so"
  # As dh_strip strips a shared object.
  strip --remove-section=.comment --remove-section=.note --strip-unneeded "$so"
  find "$src/usr/share/postgresql/$pg/extension" -maxdepth 1 -type f -name 'pg_webhook*' \
    -exec install -m 0644 -t "$root/usr/share/postgresql/$pg/extension" {} +
  # Anything else cargo pgrx packaged would be left out silently: refuse.
  local extra
  extra=$(cd "$src" && find . -type f ! -path "./usr/lib/postgresql/$pg/lib/pg_webhook.so" \
    ! -path "./usr/share/postgresql/$pg/extension/pg_webhook*")
  [ -z "$extra" ] || { echo "deb: $src holds files this script does not package: $extra" >&2; exit 1; }
  stage_doc "$pkg" "$root" "/usr/lib/postgresql/$pg/lib/pg_webhook.so" \
    "$(crates -p pg_webhook --no-default-features --features "pg$pg")"
  overrides "$TEMPLATES/extension/lintian-overrides" "$pkg" "$root"
  # The libraries the .so links, in the root it was linked in (the host
  # for 15).
  depends=$(shlibdeps "$dir" "$so" 2 scripts/pg-root.sh "$pg" run)
  fill "$TEMPLATES/extension/control.in" PG="$pg" VERSION="$VERSION" ARCH="$ARCH" MAINTAINER="$MAINTAINER" \
    INSTALLED_SIZE="$(installed_size "$root")" DEPENDS="postgresql-$pg, $depends" >"$root/DEBIAN/control"
  build "$pkg" "$dir"
}

webhookd() {
  local pkg=webhookd bin=${WEBHOOKD:-target/release/webhookd} dir root depends
  [ -x "$bin" ] || { echo "deb: $bin is missing: run make webhookd first" >&2; exit 1; }
  dir=$(new_build_dir "$pkg")
  dir=$(realpath "$dir")
  root=$dir/debian/$pkg
  local t=$TEMPLATES/webhookd
  install -D -m 0755 "$bin" "$root/usr/bin/webhookd"
  # As dh_strip strips an executable.
  strip --remove-section=.comment --remove-section=.note "$root/usr/bin/webhookd"
  install -D -m 0644 "$t/webhookd.service" "$root/usr/lib/systemd/system/webhookd.service"
  # The environment file may hold the database's password: root's, read
  # by systemd before it starts the service.
  install -D -m 0640 "$t/webhookd.env" "$root/etc/webhookd/webhookd.env"
  mkdir -p "$root/usr/share/man/man1"
  fill "$t/webhookd.1" VERSION="$VERSION" MANDATE="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)" |
    gzip -9n >"$root/usr/share/man/man1/webhookd.1.gz"
  chmod 0644 "$root/usr/share/man/man1/webhookd.1.gz"
  stage_doc "$pkg" "$root" /usr/bin/webhookd "$(crates -p webhookd)"
  overrides "$t/lintian-overrides" "$pkg" "$root"
  install -m 0644 "$t/conffiles" "$root/DEBIAN/conffiles"
  install -m 0755 "$t/postinst" "$t/prerm" "$t/postrm" "$root/DEBIAN/"
  depends=$(shlibdeps "$dir" "$root/usr/bin/webhookd" 3 env)
  fill "$t/control.in" VERSION="$VERSION" ARCH="$ARCH" MAINTAINER="$MAINTAINER" \
    INSTALLED_SIZE="$(installed_size "$root")" DEPENDS="$depends" >"$root/DEBIAN/control"
  build "$pkg" "$dir"
}

case "${1:-}" in
  extension) [ $# = 2 ] || usage; extension "$2" ;;
  webhookd) [ $# = 1 ] || usage; webhookd ;;
  *) usage ;;
esac
