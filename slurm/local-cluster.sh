#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the tests and for trying the SLURM path:
#   slurm/local-cluster.sh start     start munged, slurmctld and slurmd (idempotent); prints the SLURM_CONF to export
#   slurm/local-cluster.sh status    is it up? (exit 0 if so)
#   slurm/local-cluster.sh stop      stop the daemons this script started
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (.ci/run installs them).
# Everything (config, state, logs, munge key and socket) lives in CL_SLURM_DIR (default /tmp/cl-slurm);
# the node gets this machine's real CPUs and memory (`slurmd -C`), no GPUs. Clients need
#   export SLURM_CONF=$CL_SLURM_DIR/slurm.conf
# When the cluster cannot start, the reason is printed and the exit status is 1.
set -uo pipefail

D=${CL_SLURM_DIR:-/tmp/cl-slurm}
CTLD_PORT=${CL_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
export SLURM_CONF=$D/slurm.conf

fail() { echo "local-cluster: cannot start SLURM: $*" >&2; exit 1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() { alive "$D/slurmctld.pid" && alive "$D/slurmd.pid" && scontrol ping >/dev/null 2>&1 && node_ready; }

node_ready() { sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

write_config() {
    local node
    node=$(slurmd -C 2>/dev/null | head -1) || fail "slurmd -C failed"
    [ -n "$node" ] || fail "slurmd -C printed nothing"
    local cpus mem
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$((mem * 9 / 10))  # leave the OS some
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$node")" NodeAddr=127.0.0.1"
    mkdir -p "$D/state" "$D/spool" "$D/munge"
    cat >"$D/slurm.conf" <<EOF
# written by slurm/local-cluster.sh: one node, this machine, no accounting, no cgroups
ClusterName=cl-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket=$D/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    printf 'CgroupPlugin=autodetect\nConstrainCores=no\nConstrainRAMSpace=no\n' >"$D/cgroup.conf"
}

start() {
    [ "$(id -u)" = 0 ] || fail "must run as root (it starts munged, slurmctld and slurmd)"
    for bin in munged slurmctld slurmd sbatch scontrol sinfo squeue; do
        command -v "$bin" >/dev/null || fail "$bin not found (apt-get install -y slurmctld slurmd slurm-client munge)"
    done
    if up; then
        echo "local-cluster: already up"
        echo "export SLURM_CONF=$SLURM_CONF"
        return 0
    fi
    stop >/dev/null 2>&1
    write_config
    if [ ! -s "$D/munge/munge.key" ]; then
        dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none || fail "cannot write a munge key"
    fi
    chmod 700 "$D/munge" && chmod 400 "$D/munge/munge.key"
    munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket.2" \
        --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed" \
        || fail "munged did not start: $(tail -3 "$D/munge/munged.log" 2>/dev/null)"
    slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start: $(tail -5 "$D/slurmctld.log" 2>/dev/null)"
    slurmd -f "$SLURM_CONF" -N "$(hostname -s)" || fail "slurmd did not start: $(tail -5 "$D/slurmd.log" 2>/dev/null)"
    for _ in $(seq 240); do
        if scontrol ping >/dev/null 2>&1; then
            node_ready && break
            # a node that was down when the last cluster stopped stays down: resume it
            sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /down|drain/ {print $1}' |
                xargs -r -I{} scontrol update nodename={} state=resume >/dev/null 2>&1
        fi
        sleep 0.5
    done
    if ! up; then
        echo "--- slurmctld.log" >&2; tail -5 "$D/slurmctld.log" >&2 2>/dev/null
        echo "--- slurmd.log" >&2; tail -5 "$D/slurmd.log" >&2 2>/dev/null
        fail "the node did not become ready in 120 s (logs above, in $D)"
    fi
    echo "local-cluster: up ($(sinfo -h -N -o '%N %c CPUs %m MB %t'))"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    local name
    for name in slurmd slurmctld munge/munged; do
        if alive "$D/$name.pid"; then
            local pid
            pid=$(cat "$D/$name.pid")
            kill "$pid"
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        fi
        rm -f "$D/$name.pid"
    done
    echo "local-cluster: stopped"
}

status() {
    if up; then
        echo "local-cluster: up"
        sinfo
        squeue
        return 0
    fi
    echo "local-cluster: down"
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
