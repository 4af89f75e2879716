# pg_webhook — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
QUICK ?= 0
PGRX_TEST_DATA := $(CURDIR)/target/pgrx-test-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# cargo pgrx writes into the system's PostgreSQL directories.
PGRX_INSTALL_FLAGS := $(if $(SUDO),--sudo,)

.PHONY: setup install build-extension webhookd package image test lint unit-test pg-test e2e-test demo bench bench-setup bench-capture bench-delivery clean

setup:
	@scripts/setup.sh

## Install the extension into the local PostgreSQL 15 and build target/release/webhookd.
install: setup build-extension webhookd

build-extension:
	cd extension && cargo pgrx install --release --pg-config $(PG_CONFIG) $(PGRX_INSTALL_FLAGS)

webhookd:
	cargo build --release -p webhookd

## The extension as files to copy into an image or a package
## (target/release/pg_webhook-pg15/usr/...).
package: setup
	cd extension && cargo pgrx package --pg-config $(PG_CONFIG)

## The container images pg-webhook/webhookd:<version> and
## pg-webhook/postgres:<version> (deploy/*/Containerfile); compose.yaml runs them.
image: webhookd package
	scripts/image.sh

lint:
	scripts/sync-upgrade.py --check
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cd extension && cargo clippy --all-targets --features pg_test -- -D warnings

unit-test:
	cargo test --workspace --exclude pg_webhook

# #[pg_test]s run inside a backend of a cluster owned by the `postgres` user
# (PostgreSQL refuses to run as root).
# cargo pgrx test installs its debug build of the extension into PostgreSQL's
# lib directory (signing there is ~25x slower): measure only after `make
# install`, which e2e-test and bench run first.
pg-test: setup
	@mkdir -p $(PGRX_TEST_DATA)
	@if [ "$$(id -u)" = 0 ]; then chown postgres: $(PGRX_TEST_DATA); fi
	cd extension && if [ "$$(id -u)" = 0 ]; then \
	    cargo pgrx test pg15 --runas postgres --pgdata $(PGRX_TEST_DATA)/data; \
	  else cargo pgrx test pg15; fi

# The container tests (test_container, test_compose, test_faults) build
# their images from the release build and the extension package.
e2e-test: install package
	.venv/bin/pytest -q tests

## Every test: formatting, lints, unit tests, #[pg_test]s, end-to-end tests.
test: setup lint unit-test pg-test e2e-test

## Build, start a throwaway cluster and show the shop demo.
demo: install
	scripts/demo.sh

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
	-scripts/cluster.sh stop target/test-cluster
	-scripts/cluster.sh stop target/demo-cluster
	-scripts/cluster.sh stop target/bench-cluster
	cargo clean
