#!/usr/bin/env bash
# Runs every test of the workspace. The README's test command; .ci/run calls it.
#
# CARGO_TARGET_DIR defaults to a cache outside the clone so repeated runs on
# one machine are incremental; a new machine builds from nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== formatting"
cargo fmt --all -- --check

echo "== tests (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --no-fail-fast 2>&1
