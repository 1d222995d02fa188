# The `ipcall` command (rust/ipcall-cli): `make demo` and its part of `make bench`.
#
#   make demo        build the CLI, the C library and C stage, the Python wheel
#                    (.venv) and the Node addon (when node/ exists), then run
#                    `ipcall demo`: Rust -> Python -> Node -> C stages and back
#   make bench-cli   `ipcall bench`: the transports side by side (also the
#                    first part of `make bench`)
#   make demo-mem    the in-process Rust example (rust/ipcall/examples/demo.rs)
#
# The CLI's own tests run with `cargo test` (it is a default member).

CLI_TARGET := $(abspath $(or $(CARGO_TARGET_DIR),target))
IPCALL_CLI := $(CLI_TARGET)/release/ipcall
DEMO_C_STAGE := $(CLI_TARGET)/demo/stage_c
# Static libipcall needs these system libraries.
C_STATIC_LIBS := -lpthread -ldl -lm

.PHONY: cli demo-stages bench-cli demo-mem

cli:
	$(CARGO) build -q --release -p ipcall-cli --bin ipcall

# The stages: C compiled against the static library, Python from .venv, Node
# from node/ (built only where the checkout has it).
demo-stages: c-lib python-wheel $(if $(wildcard node/package.json),node-build)
	@mkdir -p $(dir $(DEMO_C_STAGE))
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -Iinclude examples/demo/stage_c.c \
	  $(C_RELEASE)/libipcall.a $(C_STATIC_LIBS) -o $(DEMO_C_STAGE)

demo: cli demo-stages
	$(IPCALL_CLI) demo --root $(CURDIR) --python $(CURDIR)/$(VENV_BIN)/python --c-stage $(DEMO_C_STAGE) \
	  --nats-server $(NATS_SERVER_BIN)

bench: bench-cli

bench-cli: cli
	$(IPCALL_CLI) bench

demo-mem:
	$(CARGO) run --release -q -p ipcall --example demo

# The README's quick starts (C, C++, Python, Node), compiled and run as
# written against an `ipcall serve` (tests/readme/run.py).
TEST_TARGETS += test-readme
.PHONY: test-readme
test-readme: cli c-lib python-wheel $(if $(wildcard node/package.json),node-build)
	python3 tests/readme/run.py --ipcall $(IPCALL_CLI) --lib $(C_RELEASE)/libipcall.a \
	  --python $(CURDIR)/$(VENV_BIN)/python
