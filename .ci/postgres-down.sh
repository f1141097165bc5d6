#!/usr/bin/env bash
# Stops the server of .ci/postgres-up.sh by its pid file (never by process name): fast shutdown, then waits.
DIR=${1:-/tmp/lph-postgres}
PIDFILE="$DIR/data/postmaster.pid"
[ -f "$PIDFILE" ] || exit 0
PID=$(head -n 1 "$PIDFILE")
kill -INT "$PID" 2>/dev/null || exit 0
for _ in $(seq 60); do kill -0 "$PID" 2>/dev/null || exit 0; sleep 0.5; done
echo "postgres-down: server $PID still running after 30 s" >&2
exit 1
