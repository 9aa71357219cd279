#!/usr/bin/env bash
# Fuzzing gate, called by .ci/run: the fuzz/ crate is formatted, lint-clean
# and its seed corpora are current (stable); then each cargo-fuzz target
# runs for FUZZ_SECONDS (default 60) on a scratch copy of its committed
# corpus (nightly, AddressSanitizer). libFuzzer exits non-zero on a panic,
# a sanitizer report or a timeout, and so does this script; the input that
# did it is left under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
# Pinned so that CI builds the same tool each time (`--locked`: with the
# dependency versions it was released with).
cargo_fuzz_version=0.13.2
targets=(frame_decoder broker_session)

# The crate is a workspace of its own; its stable builds share the root's
# target directory, which already holds ringbus's dependencies.
fuzz_crate=(--manifest-path fuzz/Cargo.toml)
cargo fmt "${fuzz_crate[@]}" --all -- --check
CARGO_TARGET_DIR=target cargo clippy "${fuzz_crate[@]}" --all-targets -- -D warnings
CARGO_TARGET_DIR=target cargo test "${fuzz_crate[@]}"

# cargo-fuzz builds with `-Zsanitizer`, which needs a nightly rustc and
# nothing else (no rust-src: cargo-fuzz does not build std by default).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
cargo +nightly fuzz --version

cargo +nightly fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  # New inputs go to the scratch copy; the committed corpus is only read.
  cp -r "fuzz/corpus/$t" "$scratch/$t"
  echo "fuzzing $t for ${seconds} s"
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" -- \
    -max_total_time="$seconds" -timeout=60 -print_final_stats=1 2>"$scratch/$t.log"; then
    tail -n 60 "$scratch/$t.log"
    echo "fuzz target $t failed; its input is under fuzz/artifacts/$t/:" >&2
    ls -l "fuzz/artifacts/$t" >&2 || true
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' "$scratch/$t.log"
done
