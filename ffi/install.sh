#!/usr/bin/env bash
# Installs the C library: libringbus.so and libringbus.a, include/ringbus.h
# (and the C++ wrapper include/ringbus.hpp)
# and a pkg-config file, from a finished build.
#
#   cargo build --release -p ringbus-ffi
#   ffi/install.sh /usr/local                 # or any prefix you can write
#   cc app.c $(pkg-config --cflags --libs ringbus)
#
# Options: --libdir DIR (default PREFIX/lib), --from DIR (the build's output
# directory, default target/release).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=""
libdir=""
from="$root/target/release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --libdir) libdir="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) prefix="$1"; shift ;;
  esac
done
if [[ -z "$prefix" ]]; then
  echo "usage: ffi/install.sh PREFIX [--libdir DIR] [--from BUILD_DIR]" >&2
  exit 2
fi
libdir="${libdir:-$prefix/lib}"
includedir="$prefix/include"
for f in libringbus.so libringbus.a; do
  [[ -f "$from/$f" ]] || { echo "$from/$f not found: run cargo build --release -p ringbus-ffi first" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
install -d "$libdir/pkgconfig" "$includedir"
install -m 0755 "$from/libringbus.so" "$libdir/libringbus.so"
install -m 0644 "$from/libringbus.a" "$libdir/libringbus.a"
install -m 0644 "$root/include/ringbus.h" "$includedir/ringbus.h"
install -m 0644 "$root/include/ringbus.hpp" "$includedir/ringbus.hpp"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" "$root/ffi/ringbus.pc.in" > "$libdir/pkgconfig/ringbus.pc"
echo "installed ringbus $version: $libdir/libringbus.{so,a}, $includedir/ringbus.h{,pp}, $libdir/pkgconfig/ringbus.pc"
