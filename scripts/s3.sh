#!/usr/bin/env bash
# Starts a throwaway S3-compatible server (moto's, from PyPI) for the tests
# of tables published to an object store, and prints the settings to use.
#
#   eval "$(scripts/s3.sh start DIR [PORT])"   # exports SANDBOX_TEST_S3_TABLES and AWS_*
#   scripts/s3.sh stop DIR
#
# moto is installed into the tests' Python venv (SANDBOX_PY_VENV, default
# ~/.cache/sandbox-venv) if missing. The server listens on 127.0.0.1 only,
# keeps its objects in memory (a test server with no data of value) and
# answers any credentials; the bucket `sandbox-tables` is created.
set -euo pipefail

cmd="${1:?usage: s3.sh start DIR [PORT] | stop DIR}"
DIR="${2:?usage: s3.sh start DIR [PORT] | stop DIR}"
PORT="${3:-45123}"
venv="${SANDBOX_PY_VENV:-$HOME/.cache/sandbox-venv}"

case "$cmd" in
start)
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
    fi
    if ! "$venv/bin/python" -c "import moto.server, boto3" 2>/dev/null; then
        echo "s3.sh: installing moto[server] from PyPI" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
    fi
    mkdir -p "$DIR"
    "$venv/bin/python" -m moto.server -H 127.0.0.1 -p "$PORT" >"$DIR/moto.log" 2>&1 &
    echo $! >"$DIR/moto.pid"
    for _ in $(seq 1 100); do
        if "$venv/bin/python" - "$PORT" >/dev/null 2>&1 <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
s3.create_bucket(Bucket="sandbox-tables")
PY
        then
            echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
            echo "export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true"
            echo "export SANDBOX_TEST_S3_TABLES=s3://sandbox-tables"
            exit 0
        fi
        sleep 0.2
    done
    echo "s3.sh: the server did not start:" >&2
    cat "$DIR/moto.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$DIR/moto.pid" ]; then
        kill "$(cat "$DIR/moto.pid")" 2>/dev/null || true
        rm -f "$DIR/moto.pid"
    fi
    ;;
*)
    echo "usage: s3.sh start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
