#!/bin/bash
# fedlib on PBS Pro with Cray PALS (Polaris, Aurora): one rank per GPU, launched by the site's
# PALS `mpiexec`. It takes --ppn/--depth/--cpu-bind; Open MPI's mpiexec (.venv/bin/mpiexec of a
# laptop install) rejects --ppn, so install with `make install SITE=1` (README: On a cluster).
#
#   qsub -v ARGS="params/quickstart.yaml --set federation.rounds=3" cluster/pbs.sh   # fedlib run
#   qsub -v NOTEBOOKS=1 cluster/pbs.sh                          # the notebooks on MPI engines
#   qsub -v NOTEBOOKS=1,KEEP=1 cluster/pbs.sh                   # engines for JupyterLab
#
# Polaris: 4 A100 and 32 cores per node (RANKS_PER_NODE=4 DEPTH=8); Aurora: 12 GPU tiles per
# node (RANKS_PER_NODE=12 DEPTH=8). fedlib binds rank i of a node to its GPU i mod count
# (PALS_LOCAL_RANKID), so no affinity wrapper is needed.
#PBS -N fedlib
#PBS -l select=2:system=polaris
#PBS -l place=scatter
#PBS -l walltime=02:00:00
#PBS -l filesystems=home:eagle
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR}"
# module use /soft/modulefiles; module load conda; conda activate   # Polaris-like: PyTorch + MPI
source .venv/bin/activate
source cluster/env.sh

if mpiexec --version 2>&1 | grep -qi "open mpi"; then
  echo "mpiexec is Open MPI's ($(command -v mpiexec)); PBS + PALS needs the site's: make install SITE=1" >&2
  exit 1
fi
NODES=$(sort -u "${PBS_NODEFILE}" | wc -l)
RANKS_PER_NODE=${RANKS_PER_NODE:-4}
DEPTH=${DEPTH:-8}
NTASKS=$(( NODES * RANKS_PER_NODE ))
MPIEXEC=(mpiexec -n "$NTASKS" --ppn "$RANKS_PER_NODE" --depth "$DEPTH" --cpu-bind depth
         --env OMP_NUM_THREADS="$DEPTH")

"${MPIEXEC[@]}" python -m fedlib doctor   # preflight: the worlds agree, the paths are writable

if [[ "${NOTEBOOKS:-0}" == 1 ]]; then
  PROFILE="fedlib-${PBS_JOBID%%.*}"
  fedlib_engines "$PROFILE" "$NTASKS" mpiexec "${MPIEXEC[@]:3}"   # mpiexec -n N <these> ipengine
  fedlib_notebooks "$PROFILE"
else
  # shellcheck disable=SC2086 - ARGS is a command line
  "${MPIEXEC[@]}" python -m fedlib run ${ARGS:-params/quickstart.yaml} --quiet
fi
