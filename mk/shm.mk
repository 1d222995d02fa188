# shm: transport — the loom model check of the ring's index logic.
# Not part of `make test` (loom explores many interleavings; a few minutes).

## loom: model-check the shm: ring and the core's lock-free ring (core/mpmc.rs) under loom (`--cfg ipcall_loom`, own target dir).
loom:
	ulimit -v 8000000; RUSTFLAGS="--cfg ipcall_loom" CARGO_TARGET_DIR=$(CURDIR)/target/loom \
		$(CARGO) test --release -p ipcall --lib loom_tests -- --test-threads=1
