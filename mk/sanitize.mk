# Sanitizers: the Rust tests under AddressSanitizer (nightly,
# -Zsanitizer=address, own target dir) and the C/C++ tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang flags on the
# test programs, linked against the release library). Not part of
# `make test` (a second, instrumented build of everything).
#
#   make sanitize          both
#   make sanitize-rust     cargo +nightly test -p ipcall -p ipcall-ffi under ASan
#   make sanitize-c        ctest of tests/c under ASan+UBSan (the valgrind run is left out)

RUST_HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
SAN_C_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Leaks are checked too; the shared suppressions file lists none today.
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

.PHONY: sanitize sanitize-rust sanitize-c

## sanitize: Rust tests under ASan and C/C++ tests under ASan+UBSan.
sanitize: sanitize-rust sanitize-c

sanitize-rust: fuzz-tools
	RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=$(CURDIR)/target/asan \
	  $(CARGO) +nightly test -p ipcall -p ipcall-ffi --target $(RUST_HOST) --lib --tests

sanitize-c: c-tools c-lib
	$(CARGO) build -q -p ipcall --example peer
	cmake/install.sh "$(C_WORK)/san-prefix" "$(C_RELEASE)" >/dev/null
	cmake -S tests/c -B "$(C_WORK)/san-build" -DCMAKE_PREFIX_PATH="$(C_WORK)/san-prefix" \
	  -DIPCALL_PEER="$(IPCALL_PEER)" -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS="$(SAN_C_FLAGS)" -DCMAKE_CXX_FLAGS="$(SAN_C_FLAGS)" \
	  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
	env -u MAKEFLAGS -u MAKELEVEL cmake --build "$(C_WORK)/san-build" -j2 -- --no-print-directory
	cd "$(C_WORK)/san-build" && ctest --output-on-failure -j2 --timeout 600 -E valgrind
