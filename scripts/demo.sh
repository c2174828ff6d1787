#!/usr/bin/env bash
# The demo: builds the example WebAssembly guests from source (if needed) and
# runs `sandbox demo` (SQL and WebAssembly jobs on synthetic fused data).
# Extra arguments go to `sandbox`, e.g. `scripts/demo.sh --data-dir /tmp/d`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
GUESTS="$CARGO_TARGET_DIR/wasm-guests"
if ! bash scripts/build-guests.sh "$GUESTS" > "$CARGO_TARGET_DIR/build-guests.log" 2>&1; then
    echo "note: the WebAssembly examples did not build (see $CARGO_TARGET_DIR/build-guests.log); the demo runs SQL jobs only" >&2
fi
exec cargo run --quiet -- "$@" demo --wasm-dir "$GUESTS"
