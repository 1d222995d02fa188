#!/usr/bin/env bash
# Builds and runs the two consumer projects against an installed ipcall tree
# (`make install PREFIX=DIR`), the way users would:
#   - CMake: find_package(ipcall CONFIG REQUIRED), targets ipcall::ipcall,
#     ipcall::ipcall_static and ipcall::ipcall_cpp;
#   - plain gcc with $(pkg-config --cflags --libs ipcall).
# Also checks the installed shared library's soname and the symlinks.
#
# usage: tests/c-consumers/run.sh PREFIX
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
abi_major=$(tr -d '[:space:]' < "$here/../../rust/ipcall-ffi/abi-major")

fail() { echo "c-consumers: $*" >&2; exit 1; }

# The soname is by ABI major version, and the links resolve to the library.
soname=$(readelf -d "$prefix/lib/libipcall.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libipcall.so.$abi_major" ]] || fail "soname is '$soname', expected libipcall.so.$abi_major"
[[ -e $prefix/lib/$soname ]] || fail "$prefix/lib/$soname is missing"

# The library exports exactly the functions the header declares.
exported=$(nm -D --defined-only "$prefix/lib/libipcall.so" | awk '$2 == "T" { print $3 }' | sort)
declared=$(sed -n 's/^[a-z0-9_ ]*[ *]\(ipcall_[a-z_]*\)(.*/\1/p' "$prefix/include/ipcall.h" | sort)
[[ -n $declared && $exported == "$declared" ]] \
  || fail "exported and declared functions differ: $(diff <(echo "$exported") <(echo "$declared") || true)"
# Stripped, with the debug info in a file of its own that the library names.
real=$(readlink -f "$prefix/lib/libipcall.so")
if readelf -S "$real" | grep -q '\.debug_info'; then fail "$real is not stripped"; fi
debuglink=$(readelf --string-dump=.gnu_debuglink "$real" | sed -n 's/.*\] *\(.*\.debug\)$/\1/p')
[[ -n $debuglink && -f $prefix/lib/$debuglink ]] || fail "$real names no debug file beside it ('$debuglink')"
readelf -S "$prefix/lib/$debuglink" | grep -q '\.debug_info' || fail "$debuglink holds no debug info"
echo "libipcall.so (soname $soname) exports the $(echo "$declared" | wc -l) functions of ipcall.h, nothing else"

# CMake consumer.
env -u MAKEFLAGS -u MAKELEVEL cmake -S "$here/cmake" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" > "$work/cmake.log" \
  || { cat "$work/cmake.log"; fail "cmake configure failed"; }
env -u MAKEFLAGS -u MAKELEVEL cmake --build "$work/cmake" -j2 > "$work/build.log" \
  || { cat "$work/build.log"; fail "cmake build failed"; }
for exe in consumer_shared consumer_static consumer_cpp; do
  out=$("$work/cmake/$exe") || fail "$exe failed"
  [[ $out == "consumer ok: ping"* ]] || fail "$exe printed: $out"
done
readelf -d "$work/cmake/consumer_shared" | grep -q "NEEDED.*\[libipcall.so.$abi_major\]" \
  || fail "consumer_shared does not depend on libipcall.so.$abi_major"
if readelf -d "$work/cmake/consumer_static" | grep -q "NEEDED.*libipcall"; then
  fail "consumer_static depends on the shared library"
fi
echo "cmake consumer: ipcall::ipcall, ipcall::ipcall_static, ipcall::ipcall_cpp built and ran"

# pkg-config consumer: plain gcc, run through the installed tree's rpath-less
# library with LD_LIBRARY_PATH, as a user without a system install would.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[[ $(pkg-config --modversion ipcall) == "$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/../../Cargo.toml" | head -n1)" ]] \
  || fail "pkg-config reports version $(pkg-config --modversion ipcall)"
# shellcheck disable=SC2046 # pkg-config prints flags to split
gcc -std=c11 -Wall -Wextra -Werror -pedantic -o "$work/consumer_pc" "$here/consumer.c" \
  $(pkg-config --cflags --libs ipcall) -lpthread
out=$(LD_LIBRARY_PATH="$prefix/lib" "$work/consumer_pc") || fail "the pkg-config consumer failed"
[[ $out == "consumer ok: ping"* ]] || fail "the pkg-config consumer printed: $out"
echo "pkg-config consumer: gcc \$(pkg-config --cflags --libs ipcall) built and ran: $out"
