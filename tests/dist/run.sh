#!/usr/bin/env bash
# Installs every artifact of `make dist` the way a user without Rust would,
# and uses it (make test-dist):
#
#   - PATH without cargo or rustc, a fresh HOME (so no pip, npm or cargo cache);
#   - the C tarball unpacked to a new prefix: its bin/ipcall serves the
#     greeter, the CMake find_package(ipcall) and pkg-config consumers build
#     and run against it (tests/c-consumers/run.sh);
#   - the wheel into a new venv (pip --no-index: nothing from the network);
#   - the two npm tarballs into an empty project, --ignore-scripts --offline;
#   - the README quick starts (C, C++, Python, Node) against the greeter;
#   - the four faces report the same version, Cargo.toml's;
#   - LICENSE inside the wheel, the sdist, both npm tarballs and the C tarball.
#
# Prints the time of each install.
#
# usage: tests/dist/run.sh DIST_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dist=$(cd "${1:?usage: tests/dist/run.sh DIST_DIR}" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
arch=$(uname -m)

fail() { echo "test-dist: $*" >&2; exit 1; }
one() { # the one file matching a glob
  local matches=("$@")
  [[ ${#matches[@]} -eq 1 && -f ${matches[0]} ]] || fail "expected one file, found: ${matches[*]}"
  echo "${matches[0]}"
}
wheel=$(one "$dist"/ipcall-"$version"-cp39-abi3-manylinux_*_"$arch".whl)
sdist=$(one "$dist/ipcall-$version.tar.gz")
npm_main=$(one "$dist/ipcall-$version.tgz")
npm_addon=$(one "$dist"/ipcall-linux-*-"$version".tgz)
c_tarball=$(one "$dist/ipcall-$version-linux-$arch.tar.gz")

# Real interpreters, found before PATH and HOME change (pyenv's shims need HOME).
python=$(python3 -c 'import sys; print(sys.executable)')
node=$(command -v node)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# PATH without any directory that has cargo or rustc; a fresh HOME; no
# variables pointing at caches or toolchains.
clean_path=
IFS=: read -ra dirs <<< "$PATH"
for dir in "${dirs[@]}"; do
  [[ -z $dir || -x $dir/cargo || -x $dir/rustc || $dir == */.pyenv/shims ]] && continue
  clean_path=${clean_path:+$clean_path:}$dir
done
export PATH=$clean_path HOME=$work/home
mkdir -p "$HOME"
unset CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR PIP_CACHE_DIR VIRTUAL_ENV PYTHONPATH LD_LIBRARY_PATH NODE_PATH
while IFS='=' read -r var _; do unset "$var"; done < <(env | grep -i '^npm_config_' || true)
! command -v cargo >/dev/null && ! command -v rustc >/dev/null || fail "cargo or rustc is still on PATH"
echo "test-dist: no cargo or rustc on PATH, HOME=$HOME"

declare -A took
timed() { # timed LABEL COMMAND...: runs it quietly, records its wall time
  local label=$1 start end log=$work/$1.log
  shift
  start=$(date +%s%N)
  "$@" > "$log" 2>&1 || { cat "$log"; fail "$label failed"; }
  end=$(date +%s%N)
  took[$label]=$(printf '%d.%02d' $(((end - start) / 1000000000)) $(((end - start) / 10000000 % 100)))
}

# LICENSE travels in every artifact.
"$python" -c 'import sys, zipfile; sys.exit(sys.argv[2] not in zipfile.ZipFile(sys.argv[1]).namelist())' \
  "$wheel" "ipcall-$version.dist-info/licenses/LICENSE" || fail "the wheel has no LICENSE"
tar tzf "$sdist" | grep -x "ipcall-$version/LICENSE" >/dev/null || fail "the sdist has no LICENSE"
for tarball in "$npm_main" "$npm_addon"; do
  tar tzf "$tarball" | grep -x "package/LICENSE" >/dev/null || fail "$(basename "$tarball") has no LICENSE"
done
tar tzf "$c_tarball" | grep -x "ipcall-$version-linux-$arch/LICENSE" >/dev/null || fail "the C tarball has no LICENSE"
# The main npm package runs nothing at install time and names its addon package.
tar xzf "$npm_main" -O package/package.json > "$work/main-package.json"
"$node" -e '
  const p = require(process.argv[1]), addon = process.argv[2]
  if (p.scripts && Object.keys(p.scripts).some((s) => /install/.test(s))) throw new Error(`install scripts: ${JSON.stringify(p.scripts)}`)
  if (!p.optionalDependencies || p.optionalDependencies[addon] !== p.version) throw new Error(`no optionalDependency on ${addon}@${p.version}`)
' "$work/main-package.json" "$(basename "$npm_addon" "-$version.tgz")" || fail "the main npm package is not as released"

# C/C++: unpack to a new prefix.
prefix=$work/opt/ipcall
mkdir -p "$prefix"
timed c-tarball tar -C "$prefix" --strip-components=1 -xzf "$c_tarball"

# Python: a new venv, then the wheel alone.
timed venv "$python" -m venv "$work/venv"
timed wheel "$work/venv/bin/python" -m pip install --no-index --disable-pip-version-check -q "$wheel"

# Node: both tarballs, no scripts, offline (the addon package must satisfy
# the main one's optionalDependency from the local tarball, or ipcall fails
# to load below).
mkdir -p "$work/project"
echo '{"name": "try-ipcall", "version": "1.0.0", "private": true}' > "$work/project/package.json"
timed npm bash -c 'cd "$1" && npm install --ignore-scripts --offline --no-audit --no-fund --loglevel=error "$2" "$3"' \
  _ "$work/project" "$npm_addon" "$npm_main"
[[ ! -L $work/project/node_modules/ipcall ]] || fail "npm linked ipcall instead of installing it"

# The CLI's man page and completions came along.
for file in share/man/man1/ipcall.1 share/bash-completion/completions/ipcall; do
  [[ -s $prefix/$file ]] || fail "the C tarball has no $file"
done
grep -q '^\.TH ipcall 1' "$prefix/share/man/man1/ipcall.1" || fail "share/man/man1/ipcall.1 is not a man page"

# The same version everywhere.
ipcall=$prefix/bin/ipcall
cat > "$work/version.c" <<'EOF'
#include <ipcall.h>
#include <stdio.h>
int main(void) { printf("%s %d.%d.%d\n", ipcall_version(), IPCALL_VERSION_MAJOR, IPCALL_VERSION_MINOR, IPCALL_VERSION_PATCH); return 0; }
EOF
# shellcheck disable=SC2046 # pkg-config prints flags to split
cc -std=c11 -o "$work/version" "$work/version.c" $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs ipcall)
declare -A versions=(
  [cli]=$("$ipcall" --version)
  [c]=$(LD_LIBRARY_PATH=$prefix/lib "$work/version")
  [python]=$("$work/venv/bin/python" -c 'import ipcall; print(ipcall.__version__)')
  [node]=$(cd "$work/project" && "$node" -e 'console.log(require("ipcall").version())')
)
declare -A expected=([cli]="ipcall $version" [c]="$version $version" [python]=$version [node]=$version)
for face in cli c python node; do
  [[ ${versions[$face]} == "${expected[$face]}" ]] || fail "$face reports '${versions[$face]}', expected '${expected[$face]}'"
done
echo "test-dist: ipcall --version, ipcall_version(), ipcall.__version__ and require('ipcall').version() all say $version"

# The README quick starts against the installed artifacts.
"$python" "$root/tests/readme/run.py" --ipcall "$ipcall" --prefix "$prefix" --python "$work/venv/bin/python" \
  --node "$node" --node-modules "$work/project/node_modules"

# CMake find_package(ipcall) and pkg-config builds against the unpacked prefix.
"$root/tests/c-consumers/run.sh" "$prefix"

printf '\ntest-dist: install times (no Rust toolchain, fresh HOME, local files only)\n'
printf '  %-72s %6s s\n' "C/C++: unpack $(basename "$c_tarball")" "${took[c-tarball]}" \
  "Python: python -m venv (not ipcall's)" "${took[venv]}" \
  "Python: pip install $(basename "$wheel")" "${took[wheel]}" \
  "Node: npm install --ignore-scripts --offline (2 tarballs)" "${took[npm]}"
