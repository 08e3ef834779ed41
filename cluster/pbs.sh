#!/bin/bash
# fedlib on a PBS Pro / Torque cluster (e.g. ALCF Polaris): controller on the head node, one
# MPI engine per node via mpiexec, then the full profile. KEEP=1 leaves the engines up for
# JupyterLab (`engines_mode = "connect"`). Adapt the #PBS lines and modules to your site.
#PBS -N fedlib
#PBS -l select=4:ncpus=32
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR}"
# module load conda; conda activate fedlib   # site specific
source .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
NODES=$(sort -u "${PBS_NODEFILE}" | wc -l)
PROFILE_NAME="fedlib-${PBS_JOBID%%.*}"

ipcontroller --profile="${PROFILE_NAME}" --ip='*' &
sleep 10
mpiexec -n "${NODES}" --ppn 1 ipengine --profile="${PROFILE_NAME}" --mpi &
python -c "import ipyparallel as ipp; ipp.Client(profile='${PROFILE_NAME}').wait_for_engines(${NODES}, timeout=600)"

if [[ "${KEEP:-0}" == 1 ]]; then
  echo "engines up: profile=${PROFILE_NAME}"; wait
else
  FEDLIB_ENGINES=connect FEDLIB_IPP_PROFILE="${PROFILE_NAME}" python -m fedlib reproduce --profile full
fi
