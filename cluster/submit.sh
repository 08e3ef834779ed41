#!/bin/bash
# Submit a fedlib job with what the system's scheduler requires, chosen from the node count and
# the walltime: the queue and file systems on the PBS systems, the partition's limits and
# network flags on the Slurm ones. A request no queue takes is refused with one line naming the
# site's rule, before anything reaches the scheduler.
#
#   cluster/submit.sh SYSTEM NODES ACCOUNT [CONFIG] [--set k=v ...]
#   cluster/submit.sh polaris 2 MYPROJ params/quickstart.yaml --set federation.rounds=3
#   WALLTIME=02:00:00 cluster/submit.sh aurora 4 MYPROJ params/quickstart.yaml
#   NOTEBOOKS=1 KEEP=1 cluster/submit.sh frontier 2 abc123       # engines for JupyterLab
#
# WALLTIME (HH:MM:SS, default 01:00:00), QUEUE (instead of the choice: checked against the
# table), STAGE=1 (the venv from node-local storage, cluster/jobs.sh), NOTEBOOKS, KEEP;
# DRY_RUN=1 prints the command instead of submitting. SYSTEM: frontier, perlmutter (Slurm:
# cluster/slurm.sbatch), polaris, aurora (PBS: cluster/pbs.sh). The tables are the sites' own,
# quoted with their sources in tests/hpc/site_docs.py; they change: check them against the guides.
set -euo pipefail
cd "$(dirname "$0")/.."
if (( $# < 3 )); then
  echo "usage: cluster/submit.sh SYSTEM NODES ACCOUNT [CONFIG] [--set k=v ...]" >&2
  exit 2
fi
SYSTEM=$1 NODES=$2 ACCOUNT=$3
shift 3
WALLTIME=${WALLTIME:-01:00:00}
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "cluster/submit.sh: NODES=$NODES is not a node count" >&2; exit 2; }
[[ "$WALLTIME" =~ ^([0-9]+):([0-5][0-9]):([0-5][0-9])$ ]] ||
  { echo "cluster/submit.sh: WALLTIME=$WALLTIME is not HH:MM:SS" >&2; exit 2; }
SECONDS_ASKED=$(( 10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]} ))

# queue min_nodes max_nodes max_hours, in order of preference (the first that fits is taken)
case "$SYSTEM" in
  polaris)   # ALCF Polaris "Running Jobs": prod routes 10-24 nodes to small (3 h), 25-99 to
             # medium (6 h), 100-496 to large (24 h); capacity: 1-4 nodes, 168 h
    TABLE=("debug 1 2 1" "debug-scaling 1 10 1" "prod 10 24 3" "prod 25 99 6" "prod 100 496 24"
           "capacity 1 4 168")
    FILESYSTEMS=home:eagle ;;
  aurora)    # ALCF Aurora "Running Jobs": prod routes 256-1024 nodes to small (12 h), 1025-1999
             # to medium (18 h), 2000-10624 to large (24 h); capacity: 1-16 nodes, 168 h. Aurora
             # mounts flare (Eagle "won't be mounted on Aurora initially": known issues)
    TABLE=("debug 1 2 1" "debug-scaling 2 256 1" "capacity 1 16 168" "prod 256 1024 12"
           "prod 1025 1999 18" "prod 2000 10624 24")
    FILESYSTEMS=home:flare ;;
  frontier)  # OLCF Frontier "batch partition" bins: 1-91 nodes 2 h, 92-183 6 h, 184-9472 12 h
    TABLE=("batch 1 91 2" "batch 92 183 6" "batch 184 9472 12") ;;
  perlmutter)  # NERSC's QOS table was not readable here: the default QOS, no limits checked
    TABLE=("regular 1 100000 48") ;;
  *) echo "cluster/submit.sh: SYSTEM=$SYSTEM: choose frontier, perlmutter, polaris or aurora" >&2; exit 2 ;;
esac

CHOSEN=""
for row in "${TABLE[@]}"; do
  read -r q lo hi hours <<< "$row"
  [[ -n "${QUEUE:-}" && "$q" != "$QUEUE" ]] && continue
  if (( NODES >= lo && NODES <= hi && SECONDS_ASKED <= hours * 3600 )); then CHOSEN=$q; break; fi
done
if [[ -z "$CHOSEN" ]]; then
  rules=""
  for row in "${TABLE[@]}"; do
    read -r q lo hi hours <<< "$row"
    [[ -n "${QUEUE:-}" && "$q" != "$QUEUE" ]] && continue
    rules+="${rules:+, }$q $lo-$hi nodes <= $hours h"
  done
  echo "cluster/submit.sh: $SYSTEM: no queue${QUEUE:+ $QUEUE} takes $NODES node(s) for $WALLTIME ($rules)" >&2
  exit 2
fi

JOB=(NOTEBOOKS="${NOTEBOOKS:-0}" KEEP="${KEEP:-0}" STAGE="${STAGE:-0}")
case "$SYSTEM" in
  polaris|aurora)
    ARGS="$*"
    [[ "$ARGS" != *[,\'\"]* ]] || { echo "cluster/submit.sh: PBS passes the arguments in -v: no commas or quotes in '$ARGS'" >&2; exit 2; }
    VARS="SYSTEM=$SYSTEM,${JOB[*]}"
    VARS=${VARS// /,}
    CMD=(qsub -A "$ACCOUNT" -q "$CHOSEN" -l "select=$NODES:system=$SYSTEM" -l place=scatter
         -l "walltime=$WALLTIME" -l "filesystems=$FILESYSTEMS" -v "$VARS${ARGS:+,ARGS=$ARGS}" cluster/pbs.sh) ;;
  frontier|perlmutter)
    EXPORT="ALL,FEDLIB_SYSTEM=$SYSTEM,${JOB[*]}"
    CMD=(sbatch -A "$ACCOUNT" -N "$NODES" -t "$WALLTIME")
    if [[ "$SYSTEM" == frontier ]]; then
      # OLCF: RCCL's alternative rendezvous protocol (set by the rccl-net-plugin module) needs
      # the allocation's --network=disable_rdzv_get; the NVMe (/mnt/bb) needs -C nvme
      CMD+=(--network=disable_rdzv_get)
      EXPORT+=",FEDLIB_RDZV=alt_read,GPUS_PER_NODE=8"
      [[ "${STAGE:-0}" == 1 ]] && CMD+=(-C nvme)
    else
      CMD+=(-C gpu)
      EXPORT+=",GPUS_PER_NODE=4"
    fi
    CMD+=(--export="${EXPORT// /,}" cluster/slurm.sbatch "$@") ;;
esac
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${CMD[@]}"; echo
else
  "${CMD[@]}"
fi
