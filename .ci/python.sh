#!/usr/bin/env bash
# The Python bindings (python/): rustfmt and clippy on their crate (its own
# workspace, see python/README.md), then a fresh venv under target/ with
# `pip install ./python pytest numpy` (maturin comes from PyPI as the build
# backend) and the pytest suite. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The crate's build outputs go under target/ with the rest.
export CARGO_TARGET_DIR="$PWD/target/python"

(cd python && cargo fmt -- --check && cargo clippy --all-targets -- -D warnings)

venv=target/python-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
start=$(date +%s)
# mcap: python/tests/test_mcap.py reads what `ringbus record` writes with the
# Python MCAP reader (what Foxglove's and ROS 2's Python tooling use).
"$venv/bin/pip" install ./python pytest numpy mcap
echo "pip install ./python took $(( $(date +%s) - start )) s"

# The tests build the CLI, libringbus and the C examples into the usual
# target directory.
unset CARGO_TARGET_DIR
"$venv/bin/python" -m pytest python/tests -q
