# ipcall — every build, test and benchmark entry point. CI runs `make test`
# (through .ci/run) on a fresh clone, so each target installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build test test-rust fmt fmt-check lint demo bench fuzz clean

all: build

# What `make test` runs. Each area (C ABI, Python, Node, cross-language
# matrix) lives in its own mk/<area>.mk, which appends its targets here.
TEST_TARGETS := fmt-check lint test-rust
-include mk/*.mk

build:
	$(CARGO) build --workspace

## test: everything CI runs — formatting, lints (missing docs are errors),
## and every test of every language.
test: $(TEST_TARGETS)

# The default members: the Rust crates only (no Python or Node needed).
test-rust:
	$(CARGO) test
	# The `tracing` feature's events. The C ABI's crate turns the feature on,
	# so `cargo test` above builds the core with it too (as with `nats`); named
	# here so that they run whatever the workspace unifies.
	$(CARGO) test -p ipcall --features tracing --test tracing_events
	$(CARGO) test -p ipcall --features tracing,nats --test tracing_nats

fmt-check:
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings -D missing_docs
	# The core as a crate user builds it by default: without the `nats`
	# feature the workspace turns on (no dead code left behind by it).
	$(CARGO) clippy -p ipcall --all-targets -- -D warnings -D missing_docs
	# The core with only `tokio` (the workspace has it with `nats`).
	$(CARGO) clippy -p ipcall --all-targets --features tokio -- -D warnings -D missing_docs
	# The core with only `tracing` (its events compiled in; off, they are not).
	$(CARGO) clippy -p ipcall --all-targets --features tracing -- -D warnings -D missing_docs
	# ... and with `nats` (its events).
	$(CARGO) clippy -p ipcall --all-targets --features tracing,nats -- -D warnings -D missing_docs

## demo: build what it needs, then run the mixed-language pipeline
## (`ipcall demo`; the recipe is in mk/cli.mk).
demo:

## bench: ratios against the raw floors, the peer libraries (ZeroMQ,
## ipc-channel, iceoryx2; zeromq.js and pyzmq next to the Node and Python
## rows) and N-client scaling, in one run; then bench_report writes the
## results into the README's ipcall-bench-peers block and $(BENCH_CHART)
## (IPCALL_BENCH_SCALING_SECS=0.5 for a quick scaling, IPCALL_BENCH_QUICK=1
## for fewer samples everywhere). The peers are built only here and in
## bench-lint (the `peers` feature of ipcall-benches), never by `make test`.
BENCH_RESULTS := $(abspath $(or $(CARGO_TARGET_DIR),target))/bench-results
BENCH_CHART := docs/bench-peers.svg
bench:
	rm -rf $(BENCH_RESULTS) && mkdir -p $(BENCH_RESULTS) && cp /proc/loadavg $(BENCH_RESULTS)/loadavg-start
	IPCALL_BENCH_RESULTS=$(BENCH_RESULTS) $(CARGO) bench -p ipcall-benches --features peers
	IPCALL_BENCH_RESULTS=$(BENCH_RESULTS) $(MAKE) --no-print-directory bench-node bench-python
	$(CARGO) run -q --release -p ipcall-benches --bin bench_report -- \
	  $(BENCH_RESULTS) README.md $(BENCH_CHART) $(BENCH_CHART)

## bench-lint: clippy over the benches with the peer libraries (what
## `make lint` leaves out, since it builds without the `peers` feature).
.PHONY: bench-lint
bench-lint:
	$(CARGO) clippy -p ipcall-benches --all-targets --features peers -- -D warnings -D missing_docs

clean:
	$(CARGO) clean
