#!/usr/bin/env bash
# Runs every test: the host workspace, the guest SDK and example guests (their
# own workspaces, built for wasm32 from source), and the integration tests that
# run those guests, with the governance store's suite on SQLite and on a real
# PostgreSQL server that this script starts (installing Debian's package if
# needed) and stops, tables published to an S3-compatible server (moto, from
# PyPI, scripts/s3.sh), and a third-party Flight SQL client (ADBC, installed
# from PyPI into a cached venv) against `sandbox serve`, and the web console
# in headless Chromium (Debian's package, driven by Playwright from PyPI;
# scripts/console-browser-test.sh installs both if missing). The README's
# test command; .ci/run calls it.
#
# CARGO_TARGET_DIR defaults to a cache outside the clone so repeated runs on
# one machine are incremental; a new machine builds from nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SANDBOX_WASM_GUESTS="$CARGO_TARGET_DIR/wasm-guests"

echo "== formatting"
cargo fmt --all -- --check

echo "== WebAssembly guests (examples/wasm, built from source)"
bash scripts/build-guests.sh "$SANDBOX_WASM_GUESTS"

echo "== guest SDK and example guests (host-target unit tests)"
(cd sandbox-sdk && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/sdk-host" cargo test --quiet 2>&1)
(cd examples/wasm && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests-host" cargo test --quiet 2>&1)

echo "== a job made by \`sandbox wasm new\` (outside the checkout; host-target tests)"
newjob="$(mktemp -d)"
cargo run --quiet -p sandbox-cli -- wasm new "$newjob/my-job"
(cd "$newjob/my-job" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/sdk-host" cargo test --quiet 2>&1)
rm -rf "$newjob"

echo "== PostgreSQL for the governance store's second backend"
pgdir="$(mktemp -d)"
log="$(mktemp)"
s3dir="$(mktemp -d)"
trap 'bash scripts/postgres.sh stop "$pgdir"; bash scripts/s3.sh stop "$s3dir"; rm -rf "$log" "$pgdir" "$s3dir"' EXIT
eval "$(bash scripts/postgres.sh start "$pgdir" "${SANDBOX_TEST_POSTGRES_PORT:-54329}")"
export SANDBOX_REQUIRE_POSTGRES=1
echo "   $SANDBOX_TEST_POSTGRES_URL"

echo "== an S3-compatible server (moto, from PyPI) for tables published to an object store"
eval "$(bash scripts/s3.sh start "$s3dir" "${SANDBOX_TEST_S3_PORT:-45123}")"
export SANDBOX_REQUIRE_S3=1
echo "   $AWS_ENDPOINT, $SANDBOX_TEST_S3_TABLES"

echo "== host workspace (target dir $CARGO_TARGET_DIR)"
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary of the workspace.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "workspace: %d passed, %d failed\n", p, f }' "$log"

echo "== Arrow Flight SQL with a third-party client (ADBC from PyPI) against sandbox serve"
flight=0
bash scripts/flight-client-test.sh || flight=$?
echo "flight sql client: $([ "$flight" -eq 0 ] && echo passed || echo FAILED)"

echo "== web console in headless Chromium (Playwright) against sandbox serve"
console=0
bash scripts/console-browser-test.sh || console=$?
echo "console browser test: $([ "$console" -eq 0 ] && echo passed || echo FAILED)"
[ "$status" -ne 0 ] && exit "$status"
[ "$flight" -ne 0 ] && exit "$flight"
exit "$console"
