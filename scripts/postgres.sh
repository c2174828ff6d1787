#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and prints its URL.
#
#   eval "$(scripts/postgres.sh start DIR [PORT])"   # exports SANDBOX_TEST_POSTGRES_URL
#   scripts/postgres.sh stop DIR
#
# Installs Debian's `postgresql` package if no server binaries are found
# (needs root). The server listens on 127.0.0.1 only, trusts local
# connections (a test server with no data of value), and keeps everything in
# DIR. As root, it runs as the `postgres` account (PostgreSQL refuses root).
set -euo pipefail

cmd="${1:?usage: postgres.sh start DIR [PORT] | stop DIR}"
DIR="${2:?usage: postgres.sh start DIR [PORT] | stop DIR}"
PORT="${3:-54329}"

find_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

BIN="$(find_bin)"
case "$cmd" in
start)
    if [ -z "$BIN" ]; then
        echo "postgres.sh: installing Debian's postgresql package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
        BIN="$(find_bin)"
        [ -n "$BIN" ] || { echo "postgres.sh: no PostgreSQL server binaries after installing" >&2; exit 1; }
    fi
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    if [ -f "$DIR/data/postmaster.pid" ]; then
        as_server_user "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR/data"
    as_server_user "$BIN/initdb" -D "$DIR/data" -A trust -U sandbox -E UTF8 >"$DIR/initdb.log" 2>&1 ||
        { cat "$DIR/initdb.log" >&2; exit 1; }
    as_server_user "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >&2 ||
        { cat "$DIR/server.log" >&2; exit 1; }
    echo "export SANDBOX_TEST_POSTGRES_URL=postgresql://sandbox@127.0.0.1:$PORT/postgres"
    ;;
stop)
    [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ] &&
        as_server_user "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: postgres.sh start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
