# The cross-language matrix (tests/matrix/): clients in Rust, C, C++, Python
# and Node against servers in Rust, C, Python and Node, over unix, pipe and
# shm, each pair in separate processes (tests/matrix/README.md).
#
#   make test-matrix        1,000 checksummed calls per cell (part of `make test`)
#   make test-full          `make test`, then the matrix with $(MATRIX_FULL_CALLS) calls per cell
#
# Cells run $(MATRIX_JOBS) at a time. Node cells need node/ (built here when
# the checkout has it); otherwise they are listed as skipped, with the reason.

MATRIX_TARGET := $(abspath $(or $(CARGO_TARGET_DIR),target))
MATRIX_BIN := $(MATRIX_TARGET)/matrix
MATRIX_CALLS ?= 1000
MATRIX_FULL_CALLS ?= 10000
MATRIX_JOBS ?= 2
MATRIX_CFLAGS := -O2 -Wall -Wextra -Werror -Iinclude -Ibindings/cpp

TEST_TARGETS += test-matrix

.PHONY: matrix-peers test-matrix test-matrix-full test-full

matrix-peers: c-lib python-wheel $(if $(wildcard node/package.json),node-build)
	$(CARGO) build -q --release -p ipcall-cli --bin ipcall --example matrix-peer
	@mkdir -p $(MATRIX_BIN)
	$(CC) -std=c11 $(MATRIX_CFLAGS) tests/matrix/c/server.c $(MATRIX_TARGET)/release/libipcall.a \
	  -lpthread -ldl -lm -o $(MATRIX_BIN)/c-server
	$(CC) -std=c11 $(MATRIX_CFLAGS) tests/matrix/c/client.c $(MATRIX_TARGET)/release/libipcall.a \
	  -lpthread -ldl -lm -o $(MATRIX_BIN)/c-client
	$(CXX) -std=c++17 $(MATRIX_CFLAGS) tests/matrix/cpp/client.cpp $(MATRIX_TARGET)/release/libipcall.a \
	  -lpthread -ldl -lm -o $(MATRIX_BIN)/cpp-client

MATRIX_RUN = python3 tests/matrix/run.py --root $(CURDIR) \
	--rust-peer $(MATRIX_TARGET)/release/examples/matrix-peer \
	--c-server $(MATRIX_BIN)/c-server --c-client $(MATRIX_BIN)/c-client \
	--cpp-client $(MATRIX_BIN)/cpp-client --python $(CURDIR)/$(VENV_BIN)/python \
	--ipcall $(MATRIX_TARGET)/release/ipcall --jobs $(MATRIX_JOBS)

test-matrix: matrix-peers
	$(MATRIX_RUN) --calls $(MATRIX_CALLS)

test-matrix-full: matrix-peers
	$(MATRIX_RUN) --calls $(MATRIX_FULL_CALLS)

## test-full: everything `make test` runs, then the matrix with bigger counts.
test-full: test
	$(MAKE) --no-print-directory test-matrix-full
