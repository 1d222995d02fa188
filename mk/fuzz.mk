# Fuzzing: one cargo-fuzz target per decoder that reads peer-controlled
# bytes (fuzz/fuzz_targets/). Needs nightly and cargo-fuzz, installed when
# missing. Not part of `make test`; `fuzz-smoke` is part of `make test-full`.
#
#   make fuzz                 each target for $(FUZZ_SECONDS) s (default 60)
#   make fuzz-smoke           each target for 10 s
#   make fuzz FUZZ_TARGETS=shm_ring FUZZ_SECONDS=600

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= frame_decoder fifo_records shm_ring shm_setup handshake
# libFuzzer options: no leak checks across the many short-lived sockets,
# and a 2 GB RSS limit (the default).
FUZZ_FLAGS ?= -rss_limit_mb=2048

.PHONY: fuzz fuzz-smoke fuzz-tools

fuzz-tools:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

## fuzz: run every fuzz target for $(FUZZ_SECONDS) s (nightly + cargo-fuzz).
fuzz: fuzz-tools
	cd fuzz && $(CARGO) +nightly fuzz build
	@set -e; mkdir -p $(CURDIR)/target/fuzz-logs; cd fuzz; for target in $(FUZZ_TARGETS); do \
	  log=$(CURDIR)/target/fuzz-logs/$$target.log; \
	  echo "== fuzz $$target for $(FUZZ_SECONDS) s (log: $$log)"; \
	  if ! $(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) >$$log 2>&1; then \
	    tail -40 $$log; echo "fuzz target $$target FAILED (input in fuzz/artifacts/$$target)"; exit 1; \
	  fi; \
	  grep -E '^Done [0-9]+ runs' $$log || tail -1 $$log; \
	done

## fuzz-smoke: every fuzz target for 10 s.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10
