# The C ABI, the C++ wrapper and their CMake / pkg-config package.
#
#   make c-header          regenerate include/ipcall.h (cbindgen, pinned)
#   make c-lib             build libipcall.so / libipcall.a (release)
#   make install PREFIX=/some/dir
#                          install lib, headers, CMake config and ipcall.pc
#   make test-c            (part of `make test`) header check, ctest with the
#                          C and C++ tests and examples (once under valgrind),
#                          the CMake and pkg-config consumer projects, and a
#                          program linked against the build tree itself.
#
# Tools this needs and installs when absent: cmake, valgrind and pkg-config (apt) and
# cbindgen $(CBINDGEN_VERSION) (cargo install --locked).

CBINDGEN_VERSION := 0.29.4
CBINDGEN ?= $(firstword $(shell command -v cbindgen 2>/dev/null) $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/cbindgen)
PREFIX ?= /usr/local
# Where `make test-c` installs the package and builds the C/C++ tests.
CARGO_TARGET := $(abspath $(or $(CARGO_TARGET_DIR),target))
C_WORK := $(CARGO_TARGET)/c
C_PREFIX := $(C_WORK)/prefix
C_RELEASE := $(CARGO_TARGET)/release
IPCALL_PEER := $(CARGO_TARGET)/debug/examples/peer

TEST_TARGETS += test-c

.PHONY: c-tools c-header c-header-check c-lib install test-c c-tests c-consumers c-build-tree

c-tools:
	@command -v cmake >/dev/null && command -v valgrind >/dev/null && command -v pkg-config >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq cmake valgrind pkg-config >/dev/null; }
	@"$(CBINDGEN)" --version 2>/dev/null | grep -qx 'cbindgen $(CBINDGEN_VERSION)' \
	  || $(CARGO) install --quiet cbindgen --version $(CBINDGEN_VERSION) --locked

## c-header: regenerate the checked-in include/ipcall.h from rust/ipcall-ffi.
c-header: c-tools
	cd rust/ipcall-ffi && "$(CBINDGEN)" --quiet --config cbindgen.toml --crate ipcall-ffi --output ../../include/ipcall.h
	python3 cmake/check_header_docs.py include/ipcall.h

# Fails when the checked-in header is not what the Rust source generates.
c-header-check: c-header
	@git diff --exit-code -- include/ipcall.h \
	  || { echo "include/ipcall.h is stale: commit the regenerated header (make c-header)"; exit 1; }

c-lib:
	$(CARGO) build --release -p ipcall-ffi

## install: lib (shared + static, stripped; debug info beside them),
## include/ipcall.h, include/ipcall.hpp, lib/cmake/ipcall/,
## lib/pkgconfig/ipcall.pc under $(DESTDIR)$(PREFIX) (relocatable).
install: c-lib
	DESTDIR="$(DESTDIR)" cmake/install.sh "$(PREFIX)" "$(C_RELEASE)"

test-c: c-header-check c-lib c-tests c-consumers c-build-tree

# The build tree is usable as it is: `-L target/release -lipcall` links, and
# the program finds libipcall.so.<ABI major> (the soname link build.rs makes).
c-build-tree: c-lib
	@work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT \
	  && $(CC) -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/in_process.c \
	       -L "$(C_RELEASE)" -lipcall -o "$$work/in_process" \
	  && readelf -d "$$work/in_process" | grep -q 'NEEDED.*\[libipcall\.so\.$(shell tr -d '[:space:]' < rust/ipcall-ffi/abi-major)\]' \
	  && out=$$(LD_LIBRARY_PATH="$(C_RELEASE)" "$$work/in_process" hello) \
	  && [[ $$out == "reply: hello" ]] \
	  || { echo "c-build-tree: a program linked with -L $(C_RELEASE) -lipcall did not run: $${out:-}"; exit 1; }
	@echo "build tree: a program linked with -L $(C_RELEASE) -lipcall runs (soname link present)"

# ctest: the C and C++ tests (each transport in this build; cross-process
# ones against the Rust peer), the examples, and the C tests under valgrind.
c-tests: c-tools c-lib nats-server
	$(CARGO) build -q -p ipcall --features nats --example peer
	cmake/install.sh "$(C_PREFIX)" "$(C_RELEASE)" >/dev/null
	cmake -S tests/c -B "$(C_WORK)/build" -DCMAKE_PREFIX_PATH="$(C_PREFIX)" \
	  -DIPCALL_PEER="$(IPCALL_PEER)" -DIPCALL_NATS_SERVER="$(NATS_SERVER_BIN)" -DCMAKE_BUILD_TYPE=Debug >/dev/null
	env -u MAKEFLAGS -u MAKELEVEL cmake --build "$(C_WORK)/build" -j2 -- --no-print-directory
	cd "$(C_WORK)/build" && { ctest --output-on-failure -j2 --timeout 300; status=$$?; \
	  grep -h '^SKIP' Testing/Temporary/LastTest.log | sort -u || true; exit $$status; }

# The two consumer projects build against a fresh staged install
# (`make install DESTDIR=... PREFIX=/opt/ipcall`), moved elsewhere first:
# DESTDIR is honoured and the tree is relocatable.
c-consumers: c-tools c-lib
	@work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT \
	  && $(MAKE) --no-print-directory install DESTDIR="$$work/stage" PREFIX=/opt/ipcall \
	  && test -f "$$work/stage/opt/ipcall/include/ipcall.h" \
	  && mv "$$work/stage/opt/ipcall" "$$work/moved" \
	  && tests/c-consumers/run.sh "$$work/moved"
