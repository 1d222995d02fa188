# Node package (node/): the napi-rs addon, its generated index.js / index.d.ts
# (checked in; CI fails if they are stale) and the `node --test` suite.
#
#   make test-node          build the addon (release), check the generated
#                           files are fresh, run node/test/ (part of `make test`;
#                           it includes the new-user `npm install` tests, whose
#                           cargo build is cold once, then warm)
#   make test-node-install  only those install tests, with a cold cargo build
#   make bench-node         Node<->Rust round trips next to Rust<->Rust

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

bench-node: node-build
	$(CARGO) build -q --release --example peer -p ipcall --features nats
	$(CARGO) build -q --release --example roundtrip -p ipcall-node
	cd $(NODE_DIR) && node bench/roundtrip.js
