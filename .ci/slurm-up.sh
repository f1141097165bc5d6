#!/usr/bin/env bash
# Brings up a private single-node SLURM cluster (Debian slurm-wlm 22.05 + munge + slurmdbd on a private MariaDB)
# for the SLURM tests, as root, without systemd. Everything lives under one directory with non-default ports and a
# private munge socket, so it never collides with another cluster on the machine. The node has two fake GPUs
# (gres gpu:2 over two character devices in DIR/dev that behave as /dev/null): a job asking for GPUs gets them in
# CUDA_VISIBLE_DEVICES as on a real cluster.
#
#   eval "$(.ci/slurm-up.sh [DIR])"     # prints `export SLURM_CONF=DIR/slurm.conf`
#   .ci/slurm-down.sh DIR               # stops the daemons by their pid files
set -euo pipefail
DIR=${1:-/tmp/lph-slurm}
PORT_BASE=${LPH_SLURM_PORT_BASE:-16810}
log() { echo "slurm-up: $*" >&2; }

need=()
for cmd in slurmctld slurmd slurmdbd munged mariadbd; do command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd"); done
if [ ${#need[@]} -gt 0 ]; then
    log "installing slurm-wlm slurmdbd munge mariadb-server (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm slurmdbd munge mariadb-server >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm slurmdbd munge mariadb-server >/dev/null; }
fi

if [ -f "$DIR/slurm.conf" ] && SLURM_CONF="$DIR/slurm.conf" sinfo -h -o '%T %G' 2>/dev/null | grep -qx 'idle gpu:2'; then
    log "cluster in $DIR already up"
    echo "export SLURM_CONF=$DIR/slurm.conf"
    exit 0
fi
"$(dirname "$0")/slurm-down.sh" "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"/{state,spool,log,run,munge,mysql,dev}
chmod 755 "$DIR"
HOST=$(hostname -s)
for i in 0 1; do mknod -m 666 "$DIR/dev/fakegpu$i" c 1 3; done
echo "Name=gpu File=$DIR/dev/fakegpu[0-1]" >"$DIR/gres.conf"
SOCKET="$DIR/munge/munge.socket"

# munge: private key and socket, run as the munge user
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chown -R munge:munge "$DIR/munge"
chmod 755 "$DIR/munge"
chmod 400 "$DIR/munge/munge.key"
runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"

# MariaDB on a loopback port for slurmdbd
mariadb-install-db --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=socket >/dev/null 2>&1
mariadbd --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" --port=$((PORT_BASE + 6)) \
    --bind-address=127.0.0.1 --user=root --pid-file="$DIR/run/mysqld.pid" --log-error="$DIR/log/mysqld.log" \
    --skip-name-resolve &
for _ in $(seq 60); do [ -S "$DIR/run/mysql.sock" ] && break; sleep 0.5; done
mariadb --socket="$DIR/run/mysql.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'lph';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCKET
DbdHost=localhost
DbdPort=$((PORT_BASE + 9))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT_BASE + 6))
StorageUser=slurm
StoragePass=lph
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
chmod 600 "$DIR/slurmdbd.conf"

cat >"$DIR/slurm.conf" <<EOF
ClusterName=lph
SlurmctldHost=$HOST
SlurmctldPort=$((PORT_BASE + 7))
SlurmdPort=$((PORT_BASE + 8))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
KillWait=5
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT_BASE + 9))
AccountingStoragePass=$SOCKET
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
GresTypes=gpu
$(slurmd -C | head -n 1) Gres=gpu:2
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
echo "CgroupPlugin=autodetect" >"$DIR/cgroup.conf"
export SLURM_CONF="$DIR/slurm.conf"

slurmdbd
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster lph >/dev/null 2>&1 || true
slurmctld
slurmd
for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "${state:-}" != idle ]; then
    log "node did not become idle (state: ${state:-none}); logs in $DIR/log"
    tail -n 20 "$DIR"/log/*.log >&2 || true
    exit 1
fi
log "cluster up in $DIR (node $HOST idle)"
echo "export SLURM_CONF=$DIR/slurm.conf"
