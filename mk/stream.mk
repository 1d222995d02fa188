# Stream transports (unix:, pipe:): fuzzing of the wire decoder.
# Not part of `make test` (it needs nightly and libFuzzer); run by hand.

FUZZ_SECONDS ?= 60

## fuzz: fuzz the frame decoder for $(FUZZ_SECONDS) s (nightly + cargo-fuzz, installed if missing).
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cd fuzz && $(CARGO) +nightly fuzz run frame_decoder -- -max_total_time=$(FUZZ_SECONDS)
