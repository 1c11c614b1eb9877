#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a free loopback port and print the shell line that
# points the key-store tests at it:  eval "$(tests/support/start-postgres.sh)"
# The cluster lives in a temp dir; stop it with: pg_ctl -D "$FILTERLANG_TEST_POSTGRES_DIR" stop
set -euo pipefail
BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$BIN/initdb" ] || { echo "start-postgres: no PostgreSQL binaries found" >&2; exit 1; }
DIR="$(mktemp -d /tmp/filterlang-pg.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust >/dev/null
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c fsync=off" start >/dev/null
as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres filterlang_test
echo "export FILTERLANG_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PORT/filterlang_test"
echo "export FILTERLANG_TEST_POSTGRES_DIR=$DIR/data"
