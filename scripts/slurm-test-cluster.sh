#!/usr/bin/env bash
# A single-node Slurm on localhost for the recipe tests: `start` installs slurm-wlm and munge if
# missing, then starts munged, slurmctld and slurmd (as root) with state, spool, pid and log
# files under $LADDER_SLURM_DIR (default /tmp/ladder-slurm); `stop` stops them. Idempotent.
set -euo pipefail
DIR="${LADDER_SLURM_DIR:-/tmp/ladder-slurm}"
HOST="$(hostname -s)"

stop() {
    for name in slurmd slurmctld munged; do
        if [ -f "$DIR/$name.pid" ]; then
            kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
            rm -f "$DIR/$name.pid"
        fi
    done
}

start() {
    if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null && sinfo >/dev/null 2>&1; then
        echo "slurm test cluster already running"; return 0
    fi
    stop
    mkdir -p "$DIR"/{state,spool,log,munge} /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
    [ -f /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
    chown -R root:root /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
    munged --force --pid-file="$DIR/munged.pid" 2>/dev/null || munged --force
    [ -f "$DIR/munged.pid" ] || pgrep -n munged > "$DIR/munged.pid"
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ladder-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$HOST CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld
    slurmd
    for _ in $(seq 1 30); do
        if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
            echo "slurm test cluster up on $HOST"; return 0
        fi
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm test cluster did not come up; logs in $DIR/log" >&2
    sinfo >&2 || true
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
