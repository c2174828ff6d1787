#!/usr/bin/env bash
# The peer utility benchmark: the product and its peers (SmartNoise SQL,
# OpenDP on Polars) on the same generated data, at equal ε, δ and
# contribution bounds, one table of median relative errors side by side.
#
#   scripts/utility-bench.sh            # 40 runs per query
#   SANDBOX_UTILITY_RUNS=10 scripts/utility-bench.sh
#
# Installs the peers from PyPI into a venv of its own
# (~/.cache/sandbox-utility-venv); writes data and product.json under
# ${SANDBOX_UTILITY_OUT:-~/.cache/utility-bench}. Debug build (the figures
# do not depend on the profile).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SANDBOX_UTILITY_VENV:-$HOME/.cache/sandbox-utility-venv}"
out="${SANDBOX_UTILITY_OUT:-$HOME/.cache/utility-bench}"
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# smartnoise-sql 1.0 pins its own OpenDP (0.14 at the time of writing); the
# script reports the versions it ran.
"$venv/bin/pip" install --quiet --disable-pip-version-check smartnoise-sql "opendp[polars]" pyarrow pandas
"$venv/bin/python" -c 'import importlib.metadata as m; print("peers:", ", ".join(f"{p} {m.version(p)}" for p in ("smartnoise-sql", "opendp", "polars")))'
export SANDBOX_UTILITY_OUT="$out"
export SANDBOX_UTILITY_RUNS="${SANDBOX_UTILITY_RUNS:-40}"
cargo test --workspace --test integration utility_benchmark_product -- --ignored --nocapture
"$venv/bin/python" scripts/utility_bench.py "$out"
