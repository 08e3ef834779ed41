#!/bin/bash -l
# fedlib on PBS Pro with Cray PALS (Polaris, Aurora): one rank per GPU (tile), launched by the
# site's PALS `mpiexec`. Submit it with cluster/submit.sh, which picks the queue (debug,
# debug-scaling, prod, capacity) and the file systems from the system, node count and walltime:
#
#   cluster/submit.sh polaris 2 PROJ params/quickstart.yaml --set federation.rounds=3   # run
#   WALLTIME=00:30:00 cluster/submit.sh aurora 2 PROJ params/quickstart.yaml
#   NOTEBOOKS=1 cluster/submit.sh polaris 2 PROJ                # the notebooks on MPI engines
#   NOTEBOOKS=1 KEEP=1 cluster/submit.sh polaris 2 PROJ         # engines for JupyterLab
#
# The job loads the site's modules before .venv (cluster/env.sh: a PBS job does not carry the
# login shell's environment). Open MPI's mpiexec (.venv/bin/mpiexec of a laptop install) rejects
# --ppn, so install with `make install SITE=1` (README: On a cluster).
# SYSTEM=polaris (default): 4 A100 and 32 cores per node, 4 ranks x 8 cores (--depth 8
# --cpu-bind depth). Polaris's GPU-to-core affinity is reversed (GPU 3 sits with cores 0-7, GPU
# 0 with 24-31; ALCF's set_affinity_gpu_polaris.sh gives local rank i GPU 3 - i): here every rank
# sees all four GPUs in the order 3,2,1,0 and fedlib takes the one of its local rank, so rank i
# gets GPU 3 - i and NCCL peer-to-peer / CUDA IPC still see the others.
# SYSTEM=aurora: 6 GPUs x 2 tiles and 2 x 52 cores per node, 12 ranks; an explicit core list per
# rank, 8 cores each, six ranks per socket, never crossing one (cores 0 and 52 left to the OS).
# The job is rerunnable (-r y): a requeue resumes from the last checkpoint (`--resume auto`);
# qdel or the walltime's SIGTERM stops the ranks after their round (cluster/jobs.sh).
#PBS -N fedlib
#PBS -l place=scatter
#PBS -r y
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR}"
SYSTEM=${SYSTEM:-${FEDLIB_SYSTEM:-polaris}}
export FEDLIB_SYSTEM=$SYSTEM
source cluster/env.sh

if mpiexec --version 2>&1 | grep -qi "open mpi"; then
  echo "mpiexec is Open MPI's ($(command -v mpiexec)); PBS + PALS needs the site's: make install SITE=1" >&2
  exit 1
fi
NODES=$(sort -u "${PBS_NODEFILE}" | wc -l)
case "$SYSTEM" in
  polaris)
    RANKS_PER_NODE=${RANKS_PER_NODE:-4} DEPTH=${DEPTH:-8}
    BIND=(--depth "$DEPTH" --cpu-bind depth)
    export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-3,2,1,0} ;;
  aurora)
    RANKS_PER_NODE=${RANKS_PER_NODE:-12} DEPTH=${DEPTH:-8}
    CPU_LIST=${CPU_LIST:-list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100}
    BIND=(--cpu-bind "$CPU_LIST") ;;
  *) echo "SYSTEM=$SYSTEM: choose polaris or aurora (or set RANKS_PER_NODE/DEPTH for another PALS system)" >&2
     exit 2 ;;
esac
NTASKS=$(( NODES * RANKS_PER_NODE ))
fedlib_stage mpiexec -n "$NODES" --ppn 1
MPIEXEC=(mpiexec -n "$NTASKS" --ppn "$RANKS_PER_NODE" "${BIND[@]}" --env OMP_NUM_THREADS="$DEPTH")
[[ -n "${PYTHONPATH:-}" ]] && MPIEXEC+=(--env PYTHONPATH="$PYTHONPATH")

# shellcheck disable=SC2086 - ARGS is a command line
set -- ${ARGS:-params/quickstart.yaml}
# preflight with the job's config: the worlds agree, the paths are writable, the config loads
"${MPIEXEC[@]}" "$FEDLIB_PYTHON" -m fedlib doctor "$1"

if [[ "${NOTEBOOKS:-0}" == 1 ]]; then
  PROFILE="fedlib-${PBS_JOBID%%.*}"
  fedlib_engines "$PROFILE" "$NTASKS" mpiexec "${MPIEXEC[@]:3}"   # mpiexec -n N <these> ipengine
  fedlib_notebooks "$PROFILE"
else
  fedlib_run MPIEXEC "$@"
fi
