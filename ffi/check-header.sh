#!/usr/bin/env bash
# Regenerates the C header with cbindgen (the `header` feature of
# ringbus-ffi) and compares it with the committed include/ringbus.h.
#   ffi/check-header.sh           fail (exit 1, with a diff) if it is stale
#   ffi/check-header.sh --write   rewrite include/ringbus.h
set -euo pipefail
cd "$(dirname "$0")/.."
committed=include/ringbus.h
fresh=$(mktemp "${TMPDIR:-/tmp}/ringbus-header.XXXXXX.h")
trap 'rm -f "$fresh"' EXIT
RINGBUS_HEADER_OUT="$fresh" cargo build --quiet -p ringbus-ffi --features header
if [[ "${1:-}" == "--write" ]]; then
  mkdir -p include
  cp "$fresh" "$committed"
  echo "wrote $committed"
  exit 0
fi
if ! diff -u "$committed" "$fresh"; then
  echo "include/ringbus.h is stale: run ffi/check-header.sh --write and commit it" >&2
  exit 1
fi
echo "include/ringbus.h is up to date"
