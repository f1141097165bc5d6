#!/usr/bin/env bash
# Brings up a private SLURM cluster (Debian slurm-wlm 22.05 + munge + slurmdbd on a private MariaDB) for the SLURM
# tests, as root, without systemd. Everything lives under one directory with non-default ports and a private munge
# socket, so it never collides with another cluster on the machine. Each node has two fake GPUs (gres gpu:2 over two
# character devices in DIR/dev that behave as /dev/null): a job asking for GPUs gets them in CUDA_VISIBLE_DEVICES as
# on a real cluster.
#
# One node (default): the node is this host. LPH_SLURM_NODES=N (N > 1; .ci/slurm2-up.sh) gives N nodes on this
# machine, lph<N>n1 .. lph<N>n<N>: each slurmd runs in its own network namespace lph<port base>n<i> (a veth pair on
# the bridge lph<port base>br, address <subnet>.<10 + i>; slurmctld is <subnet>.1 on the bridge in the root namespace)
# and its own UTS namespace (hostname = node name) and mount namespace, where DIR/hosts (every node's name and
# address) is bind-mounted over /etc/hosts for the slurmd and its jobs. Otherwise the nodes share the file system
# (as a cluster's nodes share their run directories) and /sys (slurmd needs the cgroup mounts; `ip netns exec` would
# mount a fresh /sys without them). The namespaces and bridge are listed in DIR/network for slurm-down.sh.
#
#   eval "$(.ci/slurm-up.sh [DIR])"     # prints `export SLURM_CONF=DIR/slurm.conf` (LPH_SLURM_CONF_VAR: another name)
#   .ci/slurm-down.sh DIR               # stops the daemons by their pid files, removes the namespaces and bridge
set -euo pipefail
DIR=${1:-/tmp/lph-slurm}
PORT_BASE=${LPH_SLURM_PORT_BASE:-16810}
NODES=${LPH_SLURM_NODES:-1}
CONF_VAR=${LPH_SLURM_CONF_VAR:-SLURM_CONF}
SUBNET=${LPH_SLURM_SUBNET:-10.$((PORT_BASE / 256 % 256)).$((PORT_BASE % 256))}  # <subnet>.0/24 of a multi-node cluster
log() { echo "slurm-up: $*" >&2; }

need=()
for cmd in slurmctld slurmd slurmdbd munged mariadbd ip nsenter unshare; do
    command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing slurm-wlm slurmdbd munge mariadb-server iproute2 (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    packages=(slurm-wlm slurmdbd munge mariadb-server iproute2 util-linux)
    apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q "${packages[@]}" >/dev/null; }
fi

if [ -f "$DIR/slurm.conf" ] \
    && [ "$(SLURM_CONF="$DIR/slurm.conf" sinfo -h -N -o '%T %G' 2>/dev/null | grep -cx 'idle gpu:2')" = "$NODES" ]; then
    log "cluster in $DIR already up"
    echo "export $CONF_VAR=$DIR/slurm.conf"
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

# The nodes: this host, or NODES namespaced nodes on a bridge (and what slurm.conf says of them)
if [ "$NODES" = 1 ]; then
    CLUSTER=lph
    CTLD_HOST=$HOST
    NODE_LINES="$(slurmd -C | head -n 1) Gres=gpu:2"
    NODE_NAMES=$(slurmd -C | head -n 1 | sed 's/^NodeName=\([^ ]*\).*/\1/')
else
    CLUSTER=lph$NODES
    CTLD_HOST="$HOST($SUBNET.1)"
    BRIDGE=lph${PORT_BASE}br
    resources=$(slurmd -C | head -n 1 | cut -d' ' -f2-)  # every node has this machine's CPUs and memory
    ip link del "$BRIDGE" 2>/dev/null || true
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    echo "bridge $BRIDGE" >"$DIR/network"
    hosts="127.0.0.1 localhost"$'\n'"$SUBNET.1 $HOST"
    NODE_LINES="" NODE_NAMES=""
    for i in $(seq "$NODES"); do
        node=${CLUSTER}n$i addr=$SUBNET.$((10 + i))
        NODE_NAMES+=" $node"
        hosts+=$'\n'"$addr $node"
        NODE_LINES+="NodeName=$node NodeAddr=$addr NodeHostname=$node $resources Gres=gpu:2"$'\n'
    done
    for i in $(seq "$NODES"); do
        ns=lph${PORT_BASE}n$i
        ip netns del "$ns" 2>/dev/null || true
        ip link del "$ns" 2>/dev/null || true
        ip netns add "$ns"
        echo "netns $ns" >>"$DIR/network"
        ip link add "$ns" type veth peer name eth0 netns "$ns"  # host end named as the namespace, node end eth0
        ip link set "$ns" master "$BRIDGE" up
        ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    done
    echo "$hosts" >"$DIR/hosts"
fi
for node in $NODE_NAMES; do mkdir -p "$DIR/spool/$node"; done

cat >"$DIR/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$CTLD_HOST
SlurmctldPort=$((PORT_BASE + 7))
SlurmdPort=$((PORT_BASE + 8))
SlurmUser=root
# job ids of an N-node cluster start at N * 100000, apart from the single-node one's: tests of both clusters run in
# one process, where submitit caches job states by job id alone
FirstJobId=$(( NODES == 1 ? 1 : NODES * 100000 ))
AuthType=auth/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
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
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
echo "CgroupPlugin=autodetect" >"$DIR/cgroup.conf"
export SLURM_CONF="$DIR/slurm.conf"

slurmdbd
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
slurmctld
if [ "$NODES" = 1 ]; then
    slurmd
else
    for i in $(seq "$NODES"); do
        nsenter --net="/run/netns/lph${PORT_BASE}n$i" unshare --uts --mount --propagation slave \
            sh -c "mount --bind '$DIR/hosts' /etc/hosts && hostname ${CLUSTER}n$i && exec slurmd -N ${CLUSTER}n$i"
    done
fi
for _ in $(seq 60); do
    idle=$(sinfo -h -N -o %T 2>/dev/null | grep -cx idle || true)
    [ "$idle" = "$NODES" ] && break
    sleep 0.5
done
if [ "$idle" != "$NODES" ]; then
    log "$idle of $NODES node(s) became idle; logs in $DIR/log"
    sinfo -N >&2 || true
    tail -n 20 "$DIR"/log/*.log >&2 || true
    exit 1
fi
log "cluster up in $DIR ($(sinfo -h -o %N) idle)"
echo "export $CONF_VAR=$DIR/slurm.conf"
