#!/usr/bin/env bash
# Installs the ipcall C/C++ package under DESTDIR/PREFIX from a cargo release dir:
#
#   PREFIX/lib/libipcall.so.<version>   the shared library (soname libipcall.so.<ABI major>),
#                                       stripped; its debug info in libipcall.so.<version>.debug
#                                       beside it (found by gdb through .gnu_debuglink)
#   PREFIX/lib/libipcall.so.<ABI major> -> libipcall.so.<version>
#   PREFIX/lib/libipcall.so             -> libipcall.so.<ABI major> (for -lipcall)
#   PREFIX/lib/libipcall.a              the static library (link with -lpthread -ldl -lm),
#                                       debug info stripped
#   PREFIX/include/ipcall.h, PREFIX/include/ipcall.hpp
#   PREFIX/lib/cmake/ipcall/ipcallConfig.cmake, ipcallConfigVersion.cmake
#   PREFIX/lib/pkgconfig/ipcall.pc
#
# The tree is relocatable: ipcall.pc finds its prefix from ${pcfiledir} and
# the CMake package from its own directory, so nothing here records PREFIX
# and the tree works wherever it is moved or unpacked (make dist tars it).
# DESTDIR (environment) is prepended to every path, for staged installs.
#
# Files whose content did not change keep their time stamps (install -C), so
# a project built against the tree does not relink for nothing.
set -euo pipefail
usage() { echo "usage: [DESTDIR=DIR] cmake/install.sh PREFIX CARGO_RELEASE_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
root=$(cd "$(dirname "$0")/.." && pwd)
release=$2
destdir=${DESTDIR:-}
if [[ -n $destdir ]]; then
  [[ $1 == /* ]] || { echo "install.sh: with DESTDIR, PREFIX must be absolute (got '$1')" >&2; exit 2; }
  prefix=$destdir$1
  mkdir -p "$prefix"
else
  mkdir -p "$1"
  prefix=$(cd "$1" && pwd)
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
abi_major=$(tr -d '[:space:]' < "$root/rust/ipcall-ffi/abi-major")
[[ -n $version && -n $abi_major ]] || { echo "install.sh: cannot read the version or ABI major" >&2; exit 1; }
for f in libipcall.so libipcall.a; do
  [[ -f $release/$f ]] || { echo "install.sh: $release/$f is missing (cargo build --release -p ipcall-ffi)" >&2; exit 1; }
done

lib=$prefix/lib
install -d "$lib/cmake/ipcall" "$lib/pkgconfig" "$prefix/include"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The release profile keeps debug info (for profiling Rust); the installed
# library is stripped and its debug info goes to a file of its own.
so=libipcall.so.$version
cp "$release/libipcall.so" "$work/$so"
objcopy --only-keep-debug "$work/$so" "$work/$so.debug"
strip --strip-unneeded "$work/$so"
(cd "$work" && objcopy --add-gnu-debuglink="$so.debug" "$so")
cp "$release/libipcall.a" "$work/libipcall.a"
strip --strip-debug "$work/libipcall.a"
install -C -m 0755 "$work/$so" "$lib/$so"
install -C -m 0644 "$work/$so.debug" "$lib/$so.debug"
ln -sfn "$so" "$lib/libipcall.so.$abi_major"
ln -sfn "libipcall.so.$abi_major" "$lib/libipcall.so"
install -C -m 0644 "$work/libipcall.a" "$lib/libipcall.a"
install -C -m 0644 "$root/include/ipcall.h" "$prefix/include/ipcall.h"
install -C -m 0644 "$root/bindings/cpp/ipcall.hpp" "$prefix/include/ipcall.hpp"

# Substitutes @VAR@ in a template into a temporary file, then installs it.
configure() {
  local template=$1 dest=$2 tmp=$work/configured
  sed -e "s|@IPCALL_VERSION@|$version|g" -e "s|@IPCALL_ABI_MAJOR@|$abi_major|g" "$template" > "$tmp"
  install -C -m 0644 "$tmp" "$dest"
}
configure "$root/cmake/ipcallConfig.cmake.in" "$lib/cmake/ipcall/ipcallConfig.cmake"
configure "$root/cmake/ipcallConfigVersion.cmake.in" "$lib/cmake/ipcall/ipcallConfigVersion.cmake"
configure "$root/cmake/ipcall.pc.in" "$lib/pkgconfig/ipcall.pc"
echo "installed ipcall $version (ABI $abi_major) under $prefix"
