# Release artifacts, and the checks that they install without a Rust toolchain.
#
#   make dist            into dist/: the Python abi3 wheel (manylinux tag checked
#                        with auditwheel) and sdist; the npm main package and its
#                        linux-x64-gnu addon package; the C/C++ tarball
#                        ipcall-<version>-linux-<arch>.tar.gz (lib, include,
#                        CMake package, ipcall.pc, bin/ipcall and its man
#                        page); the .crate files
#   make test-dist       (part of `make test`) installs each artifact into a clean
#                        place with no cargo/rustc on PATH and a fresh HOME, runs
#                        the README quick starts and the CMake / pkg-config
#                        consumers against them, and prints each install's time
#   make version-check   every copy of the version agrees with Cargo.toml's
#   make set-version VERSION=x.y.z
#                        rewrites Cargo.toml and every copy (then `make c-header`)
#   make release-check   what a maintainer runs before tagging (docs/COMPATIBILITY.md)

DIST := $(CURDIR)/dist
DIST_TARGET := $(abspath $(or $(CARGO_TARGET_DIR),target))
# The one version (workspace Cargo.toml) and the machine the artifacts are for.
IPCALL_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
DIST_ARCH := $(shell uname -m)
DIST_C_NAME := ipcall-$(IPCALL_VERSION)-linux-$(DIST_ARCH)
# (mk/*.mk are read in name order: names from later files only in recipes.)
DIST_NODE_ADDON := node/ipcall.linux-x64-gnu.node

TEST_TARGETS += version-check test-dist

.PHONY: dist dist-clean dist-python dist-node dist-c dist-crates test-dist version-check set-version release-check

## dist: every release artifact into dist/ (listed with sizes at the end).
dist: dist-python dist-node dist-c dist-crates
	@echo "dist/ ($(IPCALL_VERSION)):"; cd $(DIST) && ls -l --block-size=K | tail -n +2

dist-clean:
	rm -rf $(DIST)

# maturin refuses a tag the wheel's symbols do not allow (--auditwheel
# check); auditwheel then names the tag PyPI would accept, which must be
# the one in the file name.
dist-python: python-venv
	@mkdir -p $(DIST) && rm -f $(DIST)/ipcall-*.whl $(DIST)/ipcall-$(IPCALL_VERSION).tar.gz
	$(VENV_BIN)/maturin build --release -q -m python/Cargo.toml --auditwheel check -o $(DIST)
	$(VENV_BIN)/maturin sdist -m python/Cargo.toml -o $(DIST)
	@wheel=$$(ls $(DIST)/ipcall-$(IPCALL_VERSION)-cp39-abi3-*.whl) \
	  && tag=$$(basename "$$wheel" .whl | sed 's/.*-abi3-//') \
	  && $(VENV_BIN)/auditwheel show "$$wheel" | tr -s ' \n' ' ' | grep -q "is consistent with the following platform tag: \"$$tag\"" \
	  || { $(VENV_BIN)/auditwheel show "$$wheel"; echo "dist-python: auditwheel does not confirm the tag $$tag"; exit 1; } \
	  && echo "wheel: auditwheel confirms $$tag"

# The addon is stripped here (napi builds the release profile, which keeps
# debug info); node/scripts/pack-dist.js stages and packs both packages.
dist-node: node-build
	@mkdir -p $(DIST) && rm -f $(DIST)/ipcall-$(IPCALL_VERSION).tgz $(DIST)/ipcall-linux-*-$(IPCALL_VERSION).tgz
	@work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT \
	  && strip --strip-unneeded -o "$$work/$(notdir $(DIST_NODE_ADDON))" $(DIST_NODE_ADDON) \
	  && node $(NODE_DIR)/scripts/pack-dist.js "$$work/$(notdir $(DIST_NODE_ADDON))" $(DIST)

# `make install` into a staging prefix, plus the CLI (bin/ipcall, its man
# page and bash completions) and the LICENSE, in one reproducible tarball
# (sorted, owned by root, dated by the last commit).
dist-c: c-lib cli
	@mkdir -p $(DIST) && rm -f $(DIST)/$(DIST_C_NAME).tar.gz
	@work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT \
	  && cmake/install.sh "$$work/$(DIST_C_NAME)" $(C_RELEASE) >/dev/null \
	  && install -d "$$work/$(DIST_C_NAME)/bin" \
	  && strip --strip-unneeded -o "$$work/$(DIST_C_NAME)/bin/ipcall" $(IPCALL_CLI) \
	  && install -d "$$work/$(DIST_C_NAME)/share/man/man1" "$$work/$(DIST_C_NAME)/share/bash-completion/completions" \
	  && $(IPCALL_CLI) man > "$$work/$(DIST_C_NAME)/share/man/man1/ipcall.1" \
	  && $(IPCALL_CLI) completions bash > "$$work/$(DIST_C_NAME)/share/bash-completion/completions/ipcall" \
	  && install -m 0644 LICENSE "$$work/$(DIST_C_NAME)/LICENSE" \
	  && tar -C "$$work" --sort=name --owner=0 --group=0 --numeric-owner \
	       --mtime=@$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
	       -czf $(DIST)/$(DIST_C_NAME).tar.gz $(DIST_C_NAME)

# The crates as `cargo publish` would upload them. `make dist` packs them
# without the verify build (release-check does it).
dist-crates:
	@mkdir -p $(DIST) && rm -f $(DIST)/*.crate
	$(CARGO) package -q -p ipcall -p ipcall-cli --allow-dirty --no-verify
	cp $(DIST_TARGET)/package/ipcall-$(IPCALL_VERSION).crate $(DIST_TARGET)/package/ipcall-cli-$(IPCALL_VERSION).crate $(DIST)/

## test-dist: install every artifact of dist/ without Rust and use it.
test-dist: dist c-tools
	tests/dist/run.sh $(DIST)

# The copies of the version that cannot read Cargo.toml themselves.
version-check:
	@python3 tests/dist/versions.py check $(IPCALL_VERSION)

set-version:
	@[ -n "$(VERSION)" ] || { echo "usage: make set-version VERSION=x.y.z"; exit 2; }
	python3 tests/dist/versions.py set $(VERSION)
	$(CARGO) update -q --workspace
	$(MAKE) --no-print-directory c-header node-build

## release-check: before tagging: the version's CHANGELOG entry, the
## generated files fresh, the crates' verify build, dist and test-dist.
release-check: version-check c-header-check node-build python-wheel
	@grep -q "^## \[$(IPCALL_VERSION)\]" CHANGELOG.md \
	  || { echo "release-check: CHANGELOG.md has no '## [$(IPCALL_VERSION)]' section"; exit 1; }
	cd python && IPCALL_WHEEL="$(PY_WHEEL_DIR)/ipcall-*-cp39-abi3-*.whl" ../$(VENV_BIN)/pytest -q tests/test_stubs.py
	@# The verify build of ipcall-cli takes ipcall from cargo's temporary
	@# local registry. Cargo keeps the unpacked copy (registry/src/-<hash>/,
	@# never a crates.io source) and its build, and while the version is
	@# unchanged reuses both: it would verify against old code. So the verify
	@# builds in a target dir of its own, from a fresh unpack.
	rm -rf $(DIST_TARGET)/package-verify $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/-*/ipcall-$(IPCALL_VERSION) \
	  $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src/-*/ipcall-cli-$(IPCALL_VERSION)
	CARGO_TARGET_DIR=$(DIST_TARGET)/package-verify $(CARGO) package -q -p ipcall -p ipcall-cli
	$(MAKE) --no-print-directory test-dist
	@echo "release-check: $(IPCALL_VERSION) is ready to tag"
