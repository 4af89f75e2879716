# pg_webhook — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
QUICK ?= 0
# The PostgreSQL major version a build, a test run or a benchmark is for:
# `make e2e-test PG=17`. 15 is the host's own (Debian 12); 17 and 18 run
# in Debian roots of their own (scripts/pg-root.sh, built once and cached).
# `make test` runs the suite on every version in PG_VERSIONS.
PG ?= 15
PG_VERSIONS ?= 15 17 18
# Compiled on every `make test`, not tested: no Debian suite this machine
# reaches carries them (headers from scripts/pg-pypi.sh).
PG_BUILD_ONLY ?= 14 16
export PGWEBHOOK_PG := $(PG)
# Every command that builds against or runs this PostgreSQL goes through
# scripts/pg-root.sh, which runs it in the version's root (on the host for
# 15); pg_config's path is the one inside that root.
IN_ROOT := $(CURDIR)/scripts/pg-root.sh $(PG) run
PG_CONFIG := /usr/lib/postgresql/$(PG)/bin/pg_config
# Each version's extension build in a target directory of its own (the
# bindings differ, and a root's build scripts link its own C library):
# target/pg$(PG)/release/pg_webhook-pg$(PG) is its package.
EXT_TARGET := $(CURDIR)/target/pg$(PG)
PGRX_FEATURES := --no-default-features --features pg$(PG)
PGRX_TEST_DATA := $(CURDIR)/target/pg$(PG)/pgrx-test-data
# The environment of every cargo run that builds the extension.
EXT_ENV := CARGO_TARGET_DIR=$(EXT_TARGET)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# cargo pgrx writes into the system's PostgreSQL directories.
PGRX_INSTALL_FLAGS := $(if $(SUDO),--sudo,)

.PHONY: portable e2e-portable docs deb builds test-versions build-only setup install build-extension webhookd package image test lint unit-test pg-test e2e-test demo bench bench-setup bench-capture bench-delivery clean

setup:
	@scripts/setup.sh

## Install the extension into PostgreSQL $(PG) (the host's, or its root's)
## and build target/release/webhookd (one binary for every version).
install: setup build-extension webhookd

build-extension:
	cd extension && $(IN_ROOT) env $(EXT_ENV) \
	  cargo pgrx install --release --pg-config $(PG_CONFIG) $(PGRX_FEATURES) $(PGRX_INSTALL_FLAGS)

webhookd:
	cargo build --release -p webhookd

## The extension as files to copy into an image or a package
## (target/pg$(PG)/release/pg_webhook-pg$(PG)/usr/...).
package: setup
	cd extension && $(IN_ROOT) env $(EXT_ENV) \
	  cargo pgrx package --pg-config $(PG_CONFIG) $(PGRX_FEATURES)

## The portable edition (no shared library: managed PostgreSQL) as one
## SQL file for psql -f, target/portable/pg_webhook-portable--<version>.sql:
## the SQL `webhookd install` runs (webhookd/build.rs assembles it).
portable: webhookd
	@mkdir -p target/portable
	@v=$$(target/release/webhookd --version | cut -d' ' -f2) && \
	  target/release/webhookd install --print > target/portable/pg_webhook-portable--$$v.sql && \
	  echo target/portable/pg_webhook-portable--$$v.sql

## The container images pg-webhook/webhookd:<version> and
## pg-webhook/postgres:<version>-pg<N> for each N of PG_VERSIONS
## (deploy/*/Containerfile); compose.yaml runs them.
image: webhookd
	scripts/image.sh webhookd
	@for v in $(PG_VERSIONS); do \
	  $(MAKE) --no-print-directory PG=$$v package && PGWEBHOOK_PG=$$v scripts/image.sh postgres || exit 1; \
	done

## Debian packages into target/deb/ (scripts/deb.sh): postgresql-N-pg-webhook
## for each N of PG_VERSIONS, and webhookd.
deb: webhookd
	@for v in $(PG_VERSIONS); do \
	  $(MAKE) --no-print-directory PG=$$v package && scripts/deb.sh extension $$v || exit 1; \
	done
	scripts/deb.sh webhookd

lint:
	scripts/sync-upgrade.py --check
	scripts/check-docs.py
	PYTHONPATH=bench python3 -m pgwh_bench check-goals BENCHMARKS.md
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cd extension && cargo clippy --all-targets --features pg_test -- -D warnings

unit-test:
	cargo test --workspace --exclude pg_webhook
	.venv/bin/pytest -q bench

# #[pg_test]s run inside a backend of a cluster owned by the `postgres` user
# (PostgreSQL refuses to run as root).
# cargo pgrx test installs its debug build of the extension into PostgreSQL's
# lib directory (signing there is ~25x slower): measure only after `make
# install`, which e2e-test and bench run first.
pg-test: setup
	@mkdir -p $(PGRX_TEST_DATA)
	@if [ "$$(id -u)" = 0 ]; then chown postgres: $(PGRX_TEST_DATA); fi
	cd extension && if [ "$$(id -u)" = 0 ]; then \
	    $(IN_ROOT) env $(EXT_ENV) cargo pgrx test pg$(PG) $(PGRX_FEATURES) --runas postgres --pgdata $(PGRX_TEST_DATA)/data; \
	  else $(IN_ROOT) env $(EXT_ENV) cargo pgrx test pg$(PG) $(PGRX_FEATURES); fi

# The end-to-end suite is every tier of tests/ (sql, webhookd, console,
# browser, deploy: docs/development.md); the container tests of
# tests/deploy build their images from the release build and the
# extension package.
# E2E_MARKS: a pytest -m expression (test-versions passes one).
e2e-test: install package
	.venv/bin/pytest -q $(if $(E2E_MARKS),-m "$(E2E_MARKS)") tests

# The portable edition (PGWEBHOOK_EDITION=portable: each test database gets
# it from `webhookd install`, as an owner role that is no superuser): the
# tiers that talk to the database, but the tests marked
# version_independent (webhookd's own side, the same whatever the database
# holds) and the native-only ones (each skipped saying why). Its server
# runs in a root where nothing of pg_webhook's is installed (cluster.sh's
# PGWEBHOOK_PG_ROOT=server), in a cluster of its own.
e2e-portable: install
	PGWEBHOOK_EDITION=portable PGWEBHOOK_PG_ROOT=server PGWEBHOOK_TEST_CLUSTER=$(CURDIR)/target/test-cluster-pg$(PG)-portable \
	  .venv/bin/pytest -q -m "not version_independent" tests/sql tests/webhookd tests/console

## Every test: formatting, lints, unit tests, the extension compiled for
## PG_BUILD_ONLY, the #[pg_test]s, then the end-to-end tests on each
## PostgreSQL of PG_VERSIONS.
test: setup lint builds test-versions
# setup starts building the Debian roots of every version at once.
test: export PGWEBHOOK_PG_VERSIONS := $(PG_VERSIONS)

# What only compiles, two at a time: each of these spends minutes in a
# single crate (pgrx's bindings, webhookd's link-time optimisation), so two
# share the machine's cores well. Nothing timed runs beside them.
builds:
	@$(MAKE) --no-print-directory -j2 --output-sync=target unit-test build-only webhookd

# Type-checked against each version's headers (bindings generated, every
# call and type checked; no code generated: the tested versions are the
# ones built and linked). One target directory for them all, so the build
# tools are compiled once.
build-only:
	@for v in $(PG_BUILD_ONLY); do \
	  echo "== PostgreSQL $$v: compiled only"; \
	  pg_config=$$(scripts/pg-pypi.sh $$v) || exit 1; \
	  (cd extension && PGRX_PG_CONFIG_PATH=$$pg_config CARGO_TARGET_DIR=$(CURDIR)/target/build-only \
	    cargo check --lib --no-default-features --features pg$$v) || exit 1; \
	done

# The #[pg_test]s and the whole end-to-end suite on the first version; on
# the others the end-to-end suite but the tests marked version_independent
# (webhookd's own side: tests/conftest.py says which and why), which pytest
# reports as deselected. The #[pg_test]s check the extension's Rust from
# inside a backend; what they check of a version (capture, payloads,
# signing, settings) the end-to-end suite checks on every version through
# the release build, which is the one installed. And they are dear: cargo
# pgrx links the extension with -Wl,--no-gc-sections, which the test
# harness cannot have (it keeps code that calls the server, which an
# executable cannot link), so pg-test compiles every dependency twice.
# The portable edition on the first version and the newest.
test-versions:
	@marks=; first=pg-test; for v in $(PG_VERSIONS); do \
	  echo "== PostgreSQL $$v$${marks:+ ($$marks)}"; \
	  $(MAKE) --no-print-directory PG=$$v E2E_MARKS="$$marks" $$first e2e-test || exit 1; \
	  if [ $$v = $(firstword $(PG_VERSIONS)) ] || [ $$v = $(lastword $(PG_VERSIONS)) ]; then \
	    echo "== PostgreSQL $$v, portable edition"; \
	    $(MAKE) --no-print-directory PG=$$v e2e-portable || exit 1; \
	  fi; \
	  marks="not version_independent"; first=; \
	done

## Build, start a throwaway cluster and show the shop demo.
demo: install
	scripts/demo.sh

## The documentation (README.md, docs/) as a browsable book in target/book;
## installs mdBook the first time (scripts/setup.sh docs). Not part of
## `make test` or `make lint`, which check the pages without it
## (scripts/check-docs.py).
docs:
	@scripts/setup.sh docs
	cd docs && mdbook build

bench-setup: install
	@scripts/setup.sh bench

## Every benchmark (see BENCHMARKS.md); QUICK=1 runs each briefly (< 5 min)
## and leaves BENCHMARKS.md alone.
bench: bench-setup
	QUICK=$(QUICK) scripts/bench.sh

bench-capture: bench-setup
	QUICK=$(QUICK) ONLY=B1 scripts/bench.sh

bench-delivery: bench-setup
	QUICK=$(QUICK) ONLY="B3 B5 B6" scripts/bench.sh

clean:
	-for v in $(PG_VERSIONS); do for d in test demo bench; do \
	  PGWEBHOOK_PG=$$v scripts/cluster.sh stop target/$$d-cluster-pg$$v; done; \
	  PGWEBHOOK_PG=$$v PGWEBHOOK_PG_ROOT=server scripts/cluster.sh stop target/test-cluster-pg$$v-portable; done
	cargo clean
