# The Python package (python/): an abi3 wheel built by maturin, installed
# into .venv at the repository root (created here if missing, with the pinned
# tools of python/requirements-dev.txt), then tested with pytest.
# Idempotent: a warm run rebuilds nothing and reinstalls only a changed wheel.

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(VENV)/bin
# Stamp: the venv has exactly the pinned tools (redone when the pins change).
PY_DEV_STAMP := $(VENV)/.ipcall-requirements-dev
# Cargo's target directory (CARGO_TARGET_DIR is honoured, as cargo does).
PY_CARGO_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
PY_WHEEL_DIR := $(PY_CARGO_TARGET)/python-wheels
# The sha256 of the wheel currently installed in the venv.
PY_WHEEL_STAMP := $(VENV)/.ipcall-wheel-sha256

TEST_TARGETS += test-python

.PHONY: test-python python-venv python-wheel bench-python

python-venv: $(PY_DEV_STAMP)

$(PY_DEV_STAMP): python/requirements-dev.txt
	test -x $(VENV_BIN)/python || $(PYTHON) -m venv $(VENV)
	$(VENV_BIN)/python -m pip install -q --disable-pip-version-check -r python/requirements-dev.txt
	cp python/requirements-dev.txt $@

## python-wheel: build the release abi3 wheel and install it into .venv.
python-wheel: $(PY_DEV_STAMP)
	rm -rf $(PY_WHEEL_DIR)
	$(VENV_BIN)/maturin build --release -q -m python/Cargo.toml -o $(PY_WHEEL_DIR)
	wheel=$$(ls $(PY_WHEEL_DIR)/ipcall-*-cp39-abi3-*.whl); \
	sum=$$(sha256sum "$$wheel" | cut -d' ' -f1); \
	if [ "$$(cat $(PY_WHEEL_STAMP) 2>/dev/null)" != "$$sum" ]; then \
		$(VENV_BIN)/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$$wheel" && \
		echo "$$sum" > $(PY_WHEEL_STAMP); \
	fi

## test-python: pytest against the installed wheel (and the Rust peer for
## the cross-process tests).
test-python: python-wheel
	$(CARGO) build -q -p ipcall --features nats --example peer
	cd python && IPCALL_WHEEL="$(PY_WHEEL_DIR)/ipcall-*-cp39-abi3-*.whl" \
		IPCALL_PEER="$(PY_CARGO_TARGET)/debug/examples/peer" ../$(VENV_BIN)/pytest

## bench-python: Python<->Rust round trips next to Rust<->Rust, per
## transport, and pyzmq (pinned in python/requirements-bench.txt, installed
## into .venv for the bench only).
bench-python: python-wheel
	$(VENV_BIN)/python -m pip install -q --disable-pip-version-check -r python/requirements-bench.txt
	$(CARGO) build -q --release -p ipcall --features nats --example peer
	IPCALL_PEER=$(PY_CARGO_TARGET)/release/examples/peer $(VENV_BIN)/python python/bench/roundtrip.py
