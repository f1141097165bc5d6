#!/usr/bin/env bash
# Stops the test cluster of .ci/slurm-up.sh by its pid files (never by process name).
DIR=${1:-/tmp/lph-slurm}
for pidfile in "$DIR"/run/slurmd.pid "$DIR"/run/slurmctld.pid "$DIR"/run/slurmdbd.pid "$DIR"/run/mysqld.pid \
               "$DIR"/munge/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
exit 0
