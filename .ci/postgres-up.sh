#!/usr/bin/env bash
# Starts a private PostgreSQL server for the tests (Debian's postgresql package), as root without systemd: its own
# data and socket directories under DIR, a non-default port on 127.0.0.1 only, run as the `postgres` user (initdb
# refuses root), with a database `lph` owned by a password user `lph`.
#
#   eval "$(.ci/postgres-up.sh [DIR])"   # prints `export LPH_POSTGRES_URL=postgresql://lph:lph@127.0.0.1:PORT/lph`
#   .ci/postgres-down.sh DIR             # stops the server by its pid file
set -euo pipefail
DIR=${1:-/tmp/lph-postgres}
PORT=${LPH_POSTGRES_PORT:-16832}
URL="postgresql://lph:lph@127.0.0.1:$PORT/lph"
log() { echo "postgres-up: $*" >&2; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_postgres() { runuser -u postgres -- "$@"; }

if [ -z "$(bindir)" ]; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
fi
BIN=$(bindir)

if [ -f "$DIR/data/postmaster.pid" ] && as_postgres "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    log "server in $DIR already up"
    echo "export LPH_POSTGRES_URL=$URL"
    exit 0
fi
"$(dirname "$0")/postgres-down.sh" "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR/run"
chown -R postgres:postgres "$DIR"
chmod 700 "$DIR"

as_postgres "$BIN/initdb" -D "$DIR/data" -U postgres -E UTF8 --auth-local=trust --auth-host=scram-sha-256 \
    >"$DIR/initdb.log" 2>&1 || { log "initdb failed:"; tail -n 20 "$DIR/initdb.log" >&2; exit 1; }
if ! as_postgres "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 \
        -o "-p $PORT -k $DIR/run -c listen_addresses=127.0.0.1" start >/dev/null; then
    log "server did not start; log:"
    tail -n 20 "$DIR/postgres.log" >&2 || true
    exit 1
fi
as_postgres "$BIN/psql" -h "$DIR/run" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<SQL
CREATE ROLE lph LOGIN PASSWORD 'lph';
CREATE DATABASE lph OWNER lph;
SQL
log "server up in $DIR (port $PORT)"
echo "export LPH_POSTGRES_URL=$URL"
