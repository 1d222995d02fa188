#!/usr/bin/env bash
# Installs the ipcall C/C++ package under PREFIX from a cargo release dir:
#
#   PREFIX/lib/libipcall.so.<version>   the shared library (soname libipcall.so.<ABI major>)
#   PREFIX/lib/libipcall.so.<ABI major> -> libipcall.so.<version>
#   PREFIX/lib/libipcall.so             -> libipcall.so.<ABI major> (for -lipcall)
#   PREFIX/lib/libipcall.a              the static library (link with -lpthread -ldl -lm)
#   PREFIX/include/ipcall.h, PREFIX/include/ipcall.hpp
#   PREFIX/lib/cmake/ipcall/ipcallConfig.cmake, ipcallConfigVersion.cmake
#   PREFIX/lib/pkgconfig/ipcall.pc
#
# Files whose content did not change keep their time stamps (install -C), so
# a project built against the tree does not relink for nothing.
set -euo pipefail
usage() { echo "usage: cmake/install.sh PREFIX CARGO_RELEASE_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$1
release=$2
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
abi_major=$(tr -d '[:space:]' < "$root/rust/ipcall-ffi/abi-major")
[[ -n $version && -n $abi_major ]] || { echo "install.sh: cannot read the version or ABI major" >&2; exit 1; }
for f in libipcall.so libipcall.a; do
  [[ -f $release/$f ]] || { echo "install.sh: $release/$f is missing (cargo build --release -p ipcall-ffi)" >&2; exit 1; }
done

lib=$prefix/lib
install -d "$lib/cmake/ipcall" "$lib/pkgconfig" "$prefix/include"
install -C -m 0755 "$release/libipcall.so" "$lib/libipcall.so.$version"
ln -sfn "libipcall.so.$version" "$lib/libipcall.so.$abi_major"
ln -sfn "libipcall.so.$abi_major" "$lib/libipcall.so"
install -C -m 0644 "$release/libipcall.a" "$lib/libipcall.a"
install -C -m 0644 "$root/include/ipcall.h" "$prefix/include/ipcall.h"
install -C -m 0644 "$root/bindings/cpp/ipcall.hpp" "$prefix/include/ipcall.hpp"

# Substitutes @VAR@ in a template into a temporary file, then installs it.
configure() {
  local template=$1 dest=$2 tmp
  tmp=$(mktemp)
  sed -e "s|@IPCALL_VERSION@|$version|g" -e "s|@IPCALL_ABI_MAJOR@|$abi_major|g" \
      -e "s|@PREFIX@|$prefix|g" "$template" > "$tmp"
  install -C -m 0644 "$tmp" "$dest"
  rm -f "$tmp"
}
configure "$root/cmake/ipcallConfig.cmake.in" "$lib/cmake/ipcall/ipcallConfig.cmake"
configure "$root/cmake/ipcallConfigVersion.cmake.in" "$lib/cmake/ipcall/ipcallConfigVersion.cmake"
configure "$root/cmake/ipcall.pc.in" "$lib/pkgconfig/ipcall.pc"
echo "installed ipcall $version (ABI $abi_major) under $prefix"
