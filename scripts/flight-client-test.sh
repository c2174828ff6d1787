#!/usr/bin/env bash
# Arrow Flight SQL end to end with a third-party client: ADBC's Flight SQL
# driver (Python, adbc-driver-flightsql) runs accepted and refused jobs
# against a Flight SQL server and times accepted ones (tests/flight/client.py).
#
# By default it builds and starts `sandbox serve` on a fresh data directory,
# creates accounts and an approved agreement through the HTTP API
# (tests/flight/setup_server.py), and stops it on exit; with
# SANDBOX_FLIGHT_SERVER=demo it starts the demo server instead
# (crates/sandbox-flight/examples/flight_demo_server.rs). To test
# another server instead, set SANDBOX_FLIGHT_URL (grpc://host:port) and
# SANDBOX_FLIGHT_TOKENS (a JSON file with `applicant`, `other_applicant`,
# `owner` tokens and the applicant's `agreement`, as the demo writes).
#
#   SANDBOX_PY_VENV     the Python venv (default ~/.cache/sandbox-venv; created,
#                       and adbc-driver-flightsql + pyarrow installed, if needed)
#   SANDBOX_FLIGHT_RUNS timed runs of the accepted job (default 5)
#   SANDBOX_FLIGHT_DEMO_DATA  where the demo keeps its generated tables
#                       (default ~/.cache/sandbox-flight-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
venv="${SANDBOX_PY_VENV:-$HOME/.cache/sandbox-venv}"
runs="${SANDBOX_FLIGHT_RUNS:-5}"

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating the Python venv $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import adbc_driver_flightsql, pyarrow" 2>/dev/null; then
    echo "== installing adbc-driver-flightsql and pyarrow"
    "$venv/bin/pip" install --quiet --disable-pip-version-check adbc-driver-flightsql pyarrow
fi

url="${SANDBOX_FLIGHT_URL:-}"
tokens="${SANDBOX_FLIGHT_TOKENS:-}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # FILE: wait until the server writes it
    for _ in $(seq 1 600); do
        [ -s "$1" ] && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the server exited:" >&2
            cat "$work/server.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "the server did not start in 120 s:" >&2
    cat "$work/server.log" >&2
    exit 1
}

if [ -z "$url" ] && [ "${SANDBOX_FLIGHT_SERVER:-serve}" = "serve" ]; then
    # The product path: `sandbox serve`, its Flight SQL jobs on the job pool.
    echo "== building the sandbox binary"
    cargo build --quiet -p sandbox-cli
    echo "== starting sandbox serve (HTTP API and Flight SQL)"
    "$CARGO_TARGET_DIR/debug/sandbox" --data-dir "$work/data" serve --listen 127.0.0.1:0 \
        --addr-file "$work/http" --flight-listen 127.0.0.1:0 --flight-addr-file "$work/flight" \
        >"$work/server.out" 2>"$work/server.log" &
    server_pid=$!
    wait_for "$work/flight"
    operator="$(grep -A1 'shown once' "$work/server.out" | tail -n 1)"
    echo "== accounts and an approved agreement through the HTTP API"
    "$venv/bin/python" tests/flight/setup_server.py --base "http://$(cat "$work/http")" \
        --operator-token "$operator" --out "$work/tokens.json"
    url="grpc://$(cat "$work/flight")"
    tokens="$work/tokens.json"
elif [ -z "$url" ]; then
    echo "== building the demo Flight SQL server"
    cargo build --quiet -p sandbox-flight --example flight_demo_server
    echo "== starting it"
    "$CARGO_TARGET_DIR/debug/examples/flight_demo_server" \
        --data-dir "${SANDBOX_FLIGHT_DEMO_DATA:-$HOME/.cache/sandbox-flight-demo}" \
        --port-file "$work/port" --tokens-file "$work/tokens.json" 2>"$work/server.log" &
    server_pid=$!
    wait_for "$work/port"
    url="grpc://127.0.0.1:$(cat "$work/port")"
    tokens="$work/tokens.json"
elif [ -z "$tokens" ]; then
    echo "SANDBOX_FLIGHT_URL needs SANDBOX_FLIGHT_TOKENS (a JSON file of tokens)" >&2
    exit 1
fi

echo "== ADBC Flight SQL client against $url"
status=0
"$venv/bin/python" tests/flight/client.py --url "$url" --tokens "$tokens" --runs "$runs" || status=$?
if [ "$status" -ne 0 ] && [ -n "$server_pid" ]; then
    echo "-- server log" >&2
    tail -n 40 "$work/server.log" >&2
fi
exit "$status"
