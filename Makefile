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

fmt-check:
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings -D missing_docs

## demo: build what it needs, then run the mixed-language pipeline
## (`ipcall demo`; the recipe is in mk/cli.mk).
demo:

## bench: ratios against the raw floors and N-client scaling, in one run
## (peer libraries: not yet; IPCALL_BENCH_SCALING_SECS=0.5 for a quick scaling).
bench:
	$(CARGO) bench -p ipcall-benches

clean:
	$(CARGO) clean
