#!/usr/bin/env bash
# Stops the test cluster of .ci/slurm-up.sh by its pid files (never by process name), then removes the network
# namespaces (with their veth pairs) and the bridge of a multi-node cluster, listed in DIR/network.
DIR=${1:-/tmp/lph-slurm}
for pidfile in "$DIR"/run/slurmd-*.pid "$DIR"/run/slurmctld.pid "$DIR"/run/slurmdbd.pid "$DIR"/run/mysqld.pid \
               "$DIR"/munge/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
if [ -f "$DIR/network" ]; then
    while read -r kind name; do
        case $kind in
            netns) ip link del "$name" 2>/dev/null; ip netns del "$name" 2>/dev/null ;;
            bridge) ip link del "$name" 2>/dev/null ;;
        esac
    done <"$DIR/network"
fi
exit 0
