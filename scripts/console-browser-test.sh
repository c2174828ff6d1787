#!/usr/bin/env bash
# The web console in a real browser (tests/console/browser_test.py):
# headless Chromium from Debian's `chromium` package (installed with apt-get
# if missing, with a CJK font for the Chinese pages), driven by Playwright
# from PyPI (installed into the cached venv; Playwright's own browser
# download is not used), against `sandbox serve` on a fresh data directory.
# Writes screenshots of the main pages in both languages to
# docs/console/screenshots/ (or $SANDBOX_CONSOLE_SHOTS).
#
#   SANDBOX_PY_VENV   the Python venv (default ~/.cache/sandbox-venv)
#   SANDBOX_CHROMIUM  the browser (default: chromium on PATH)
#   SANDBOX_BIN       a sandbox binary already built (default: build it)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
venv="${SANDBOX_PY_VENV:-$HOME/.cache/sandbox-venv}"
shots="${SANDBOX_CONSOLE_SHOTS:-docs/console/screenshots}"

if ! command -v chromium >/dev/null 2>&1 || ! (fc-list : family 2>/dev/null | grep -i "cjk" >/dev/null); then
    echo "== installing Debian's chromium and a CJK font"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
fi
chromium_bin="${SANDBOX_CHROMIUM:-$(command -v chromium)}"

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating the Python venv $venv"
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import playwright.sync_api" 2>/dev/null; then
    echo "== installing playwright"
    "$venv/bin/pip" install --quiet --disable-pip-version-check playwright
fi

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

sandbox="${SANDBOX_BIN:-}"
if [ -z "$sandbox" ]; then
    echo "== building the sandbox binary"
    cargo build --quiet -p sandbox-cli
    sandbox="$CARGO_TARGET_DIR/debug/sandbox"
fi
echo "== starting sandbox serve"
"$sandbox" --data-dir "$work/data" serve --listen 127.0.0.1:0 \
    --addr-file "$work/http" --no-flight >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 600); do
    [ -s "$work/http" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the server exited:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.2
done
[ -s "$work/http" ] || { echo "the server did not start in 120 s" >&2; cat "$work/server.log" >&2; exit 1; }
operator="$(grep -A1 'shown once' "$work/server.out" | tail -n 1)"

echo "== headless Chromium ($("$chromium_bin" --version 2>/dev/null || echo "$chromium_bin")) against http://$(cat "$work/http")/console"
status=0
"$venv/bin/python" tests/console/browser_test.py --base "http://$(cat "$work/http")" \
    --operator-token "$operator" --chromium "$chromium_bin" --shots "$shots" || status=$?
if [ "$status" -ne 0 ]; then
    echo "-- server log" >&2
    tail -n 40 "$work/server.log" >&2
fi
exit "$status"
