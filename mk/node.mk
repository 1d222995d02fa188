# Node package (node/): the napi-rs addon, its generated index.js / index.d.ts
# (checked in; CI fails if they are stale) and the `node --test` suite.
#
#   make test-node          build the addon (release), check the generated
#                           files are fresh, run node/test/ (part of `make test`;
#                           it includes the new-user `npm install` tests, whose
#                           cargo build is cold once, then warm)
#   make test-node-install  only those install tests, with a cold cargo build
#   make bench-node         Node<->Rust round trips next to Rust<->Rust and
#                           zeromq.js (installed for the bench only)

NODE_DIR := node
NPM ?= npm
# The install script would build the addon itself; here `napi build` does it.
NODE_INSTALL_ENV := IPCALL_SKIP_INSTALL_BUILD=1 npm_config_audit=false npm_config_fund=false

.PHONY: test-node node-build node-tools test-node-install bench-node
TEST_TARGETS += test-node

node-tools:
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  (apt-get update && apt-get install -y nodejs npm)

# `npm install` (never `npm ci`: it fails here) when node_modules is missing or
# package.json / package-lock.json changed since the last install.
$(NODE_DIR)/node_modules/.ipcall-installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json | node-tools
	cd $(NODE_DIR) && $(NODE_INSTALL_ENV) $(NPM) install
	touch $@

node-build: $(NODE_DIR)/node_modules/.ipcall-installed
	cd $(NODE_DIR) && npx --no-install napi build --platform --release
	@git diff --exit-code -- $(NODE_DIR)/index.js $(NODE_DIR)/index.d.ts || \
	  { echo "node/index.js or node/index.d.ts changed when regenerated: commit them"; exit 1; }

# The tests also drive the Rust peer (target/debug/examples/peer).
test-node: node-build
	$(CARGO) build -q --example peer -p ipcall --features nats
	cd $(NODE_DIR) && node --test --test-reporter=spec test/*.test.js test/*.test.mjs test/*.test.cjs

test-node-install: node-build
	cd $(NODE_DIR) && IPCALL_TEST_INSTALL_COLD=1 node --test --test-reporter=spec test/install.test.js

# zeromq.js, the Node peer of the bench, pinned, in a bench-only directory
# (never in node/package.json: the package does not depend on it). Its npm
# package carries prebuilt addons for linux-x64, so nothing is compiled.
ZEROMQ_JS_VERSION := 6.8.0
BENCH_NODE_PEERS := $(abspath $(or $(CARGO_TARGET_DIR),target))/bench-node-peers
$(BENCH_NODE_PEERS)/.zeromq-$(ZEROMQ_JS_VERSION): | node-tools
	rm -rf $(BENCH_NODE_PEERS) && mkdir -p $(BENCH_NODE_PEERS)
	cd $(BENCH_NODE_PEERS) && npm_config_audit=false npm_config_fund=false \
	  $(NPM) install --no-save --prefix . zeromq@$(ZEROMQ_JS_VERSION)
	touch $@

bench-node: node-build $(BENCH_NODE_PEERS)/.zeromq-$(ZEROMQ_JS_VERSION)
	$(CARGO) build -q --release --example peer -p ipcall --features nats
	$(CARGO) build -q --release --example roundtrip -p ipcall-node
	cd $(NODE_DIR) && IPCALL_BENCH_ZEROMQ=$(BENCH_NODE_PEERS)/node_modules/zeromq node bench/roundtrip.js
