# The chaos run (issue 12) and the long test target.
#
#   make soak               benches/src/bin/soak for $(SOAK_SECONDS) s per transport
#   make soak SOAK_ARGS=--no-bad-client SOAK_SECONDS=300
#   make test-full          (mk/matrix.mk) also runs a 60 s soak per transport and fuzz-smoke

SOAK_SECONDS ?= 300
SOAK_ARGS ?=

.PHONY: soak soak-smoke fuzz-smoke-after-test test-full

## soak: kill clients every ~2 s and the server every ~15 s while checksummed
## calls run over unix, pipe and shm; fails on any mismatch or hang.
soak:
	$(CARGO) build -q --release -p ipcall-benches --bin soak
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO_TARGET)/release/soak $(SOAK_ARGS)

# test-full (its recipe is in mk/matrix.mk) also runs, after `make test`,
# a 60 s soak per transport and the fuzz smoke run.
test-full: soak-smoke fuzz-smoke-after-test

soak-smoke: test
	$(MAKE) --no-print-directory soak SOAK_SECONDS=60

fuzz-smoke-after-test: test
	$(MAKE) --no-print-directory fuzz-smoke
