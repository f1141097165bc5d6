#!/usr/bin/env bash
# Brings up the private two-node SLURM cluster of the two-node tests: .ci/slurm-up.sh with LPH_SLURM_NODES=2 (nodes
# lph2n1 and lph2n2, each slurmd in its own network namespace, on the bridge lph<port base>br), ports from 16840
# (LPH_SLURM2_PORT_BASE), so it runs beside the single-node cluster of .ci/slurm-up.sh. It prints the variable the
# two-node tests read, not SLURM_CONF (which names the single-node cluster):
#
#   eval "$(.ci/slurm2-up.sh [DIR])"    # prints `export LPH_SLURM2_CONF=DIR/slurm.conf`
#   .ci/slurm-down.sh DIR               # stops it and removes its namespaces and bridge
set -euo pipefail
LPH_SLURM_NODES=2 LPH_SLURM_CONF_VAR=LPH_SLURM2_CONF LPH_SLURM_PORT_BASE=${LPH_SLURM2_PORT_BASE:-16840} \
    exec "$(dirname "$0")/slurm-up.sh" "${1:-/tmp/lph-slurm2}"
