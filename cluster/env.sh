# Sourced by the cluster/ recipes at the start of a job, in this order: the system
# (FEDLIB_SYSTEM), its modules (before the venv: a PBS job does not carry the login shell's
# environment), .venv, the caches, the collective libraries' network settings, then the
# functions the recipes call. Each variable already set in the job's environment wins. The
# sites' rules behind each line are quoted with their sources in tests/hpc/site_docs.py.
#
#   FEDLIB_SYSTEM   frontier | perlmutter | polaris | aurora | none (guessed from the host)
#   FEDLIB_MODULES  the command that loads the site's Python/PyTorch/MPI (default: per system
#                   below; `none` loads nothing). Load what `make install SITE=1` ran under.
#   FEDLIB_CACHE    tokenized data; node-local by default (each node's first rank writes it once)
#   HF_HOME         Hugging Face models/data sets; SHARED (download on a login node, compute
#                   nodes are often offline: HF_HUB_OFFLINE=1)
#   IPYTHONDIR      ipyparallel profiles and connection files; SHARED (engines on other nodes
#                   read them): project scratch ($MEMBERWORK/<project> on Frontier, $SCRATCH on
#                   Perlmutter), else the submit folder
#   MIOPEN_USER_DB_PATH, MIOPEN_CUSTOM_CACHE_DIR  MIOpen's caches (ROCm); node-local
#   STAGE=1         copy .venv to node-local storage before the ranks import torch (fedlib_stage)
fedlib_system() {
  local h
  h="${LMOD_SYSTEM_NAME:-} ${NERSC_HOST:-} $(hostname -f 2>/dev/null || hostname)"
  case "$h" in
    *frontier*) echo frontier ;; *perlmutter*) echo perlmutter ;;
    *polaris*) echo polaris ;; *aurora*) echo aurora ;; *) echo none ;;
  esac
}
export FEDLIB_SYSTEM="${FEDLIB_SYSTEM:-$(fedlib_system)}"
case "$FEDLIB_SYSTEM" in frontier|perlmutter|polaris|aurora|none) ;;
  *) echo "cluster/env.sh: FEDLIB_SYSTEM=$FEDLIB_SYSTEM: choose frontier, perlmutter, polaris, aurora or none" >&2
     return 2 ;;
esac

# --- modules, then the venv -------------------------------------------------------------------
# ALCF Polaris: the conda module, `conda activate base`, then the venv built on it; ALCF Aurora:
# `module load frameworks` before sourcing the venv; OLCF Frontier: ROCm, the RCCL network plugin
# and the GPU target that links Cray MPICH's GTL; NERSC Perlmutter: the pytorch module.
if [[ -z "${FEDLIB_MODULES:-}" ]]; then
  case "$FEDLIB_SYSTEM" in
    polaris)    FEDLIB_MODULES="module use /soft/modulefiles; module load conda; conda activate base" ;;
    aurora)     FEDLIB_MODULES="module load frameworks" ;;
    frontier)   FEDLIB_MODULES="module load PrgEnv-gnu rocm rccl-net-plugin craype-accel-amd-gfx90a" ;;
    perlmutter) FEDLIB_MODULES="module load pytorch" ;;
    *)          FEDLIB_MODULES=none ;;
  esac
fi
if [[ "$FEDLIB_MODULES" != none ]]; then
  eval "$FEDLIB_MODULES"
  # OLCF: with a non-default programming environment, its libraries come first
  if [[ "$FEDLIB_SYSTEM" == frontier && -n "${CRAY_LD_LIBRARY_PATH:-}" ]]; then
    export LD_LIBRARY_PATH="$CRAY_LD_LIBRARY_PATH:${LD_LIBRARY_PATH:-}"
  fi
fi
if [[ ! -f .venv/bin/activate ]]; then
  echo "cluster/env.sh: no .venv in $PWD: install first (make install SITE=1, README: On a cluster)" >&2
  return 1
fi
source .venv/bin/activate
FEDLIB_PYTHON="${FEDLIB_PYTHON:-python}"

# --- caches -------------------------------------------------------------------------------------
PROJECT_ID="${PROJECT_ID:-${SLURM_JOB_ACCOUNT:-${PBS_ACCOUNT:-}}}"
MEMBER_SCRATCH="${MEMBERWORK:+${MEMBERWORK}/${PROJECT_ID,,}}"   # OLCF: $MEMBERWORK/<projid>
SHARED="${FEDLIB_SHARED:-${SCRATCH:-${MEMBER_SCRATCH:-$PWD}}}"
export FEDLIB_CACHE="${FEDLIB_CACHE:-${TMPDIR:-/tmp}/fedlib-${USER:-me}}"
export HF_HOME="${HF_HOME:-$SHARED/.cache/huggingface}"
export IPYTHONDIR="${IPYTHONDIR:-$SHARED/.ipython}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
mkdir -p "$HF_HOME" "$IPYTHONDIR" outputs
# ROCm (Frontier): MIOpen's kernel database and compiled-kernel cache default to ~/.cache/miopen;
# many ranks sharing it on a network file system fail with I/O errors (OLCF Frontier user guide,
# "MIOpen"), so each job keeps them on node-local storage (MIOpen creates the folder per node).
export MIOPEN_USER_DB_PATH="${MIOPEN_USER_DB_PATH:-${TMPDIR:-/tmp}/miopen-${USER:-me}-${SLURM_JOB_ID:-${PBS_JOBID:-$$}}}"
export MIOPEN_CUSTOM_CACHE_DIR="${MIOPEN_CUSTOM_CACHE_DIR:-$MIOPEN_USER_DB_PATH}"
mkdir -p "$MIOPEN_USER_DB_PATH" "$MIOPEN_CUSTOM_CACHE_DIR"

# --- network, per site --------------------------------------------------------------------------
# The collective library on the high-speed network (Slingshot hsn*) through its libfabric
# plugin, with the settings each site's guide lists; torch.distributed's rendezvous on hsn, not
# the management Ethernet the host name resolves to. `fedlib doctor` says per rank whether the
# plugin is found (high-speed network) or the library falls back to TCP sockets.
fedlib_gtl() {  # 0 when mpi4py's MPI extension links Cray MPICH's GTL (GPU buffers to MPI)
  [[ "$("$FEDLIB_PYTHON" -m fedlib.hpc.mpilib gtl 2>/dev/null)" == yes ]]
}
case "$FEDLIB_SYSTEM" in
  frontier)    # OLCF "PyTorch on Frontier": RCCL + the aws-ofi-rccl plugin (module rccl-net-plugin)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn0,hsn1,hsn2,hsn3}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}" NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}"
    export HSA_FORCE_FINE_GRAIN_PCIE="${HSA_FORCE_FINE_GRAIN_PCIE:-1}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-kdreg2}"   # never memhooks: deadlocks with the plugin
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    export FI_CXI_DEFAULT_CQ_SIZE="${FI_CXI_DEFAULT_CQ_SIZE:-131072}" FI_CXI_DEFAULT_TX_SIZE="${FI_CXI_DEFAULT_TX_SIZE:-2048}"
    export FI_CXI_RX_MATCH_MODE="${FI_CXI_RX_MATCH_MODE:-hybrid}"
    # the alternative rendezvous protocol needs the allocation's --network=disable_rdzv_get
    # (cluster/submit.sh adds it and sets FEDLIB_RDZV=alt_read); the plugin module sets the
    # protocol itself, so without the flag it is taken back
    if [[ "${FEDLIB_RDZV:-}" == alt_read ]]; then
      export FI_CXI_RDZV_PROTO=alt_read FI_CXI_RDZV_EAGER_SIZE=0 FI_CXI_RDZV_THRESHOLD=0 FI_CXI_RDZV_GET_MIN=0
    else
      unset FI_CXI_RDZV_PROTO
    fi ;;
  perlmutter)  # NERSC: NCCL + aws-ofi-nccl over CXI (the pytorch/nccl modules set these too)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}" NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}" ;;
  polaris)     # ALCF "NCCL": the AWS libfabric plugin, else NCCL runs over sockets
    FEDLIB_NCCL_PLUGIN_DIR="${FEDLIB_NCCL_PLUGIN_DIR:-/soft/libraries/aws-ofi-nccl/v1.9.1-aws/lib}"
    [[ -d "$FEDLIB_NCCL_PLUGIN_DIR" ]] || echo "cluster/env.sh: no NCCL plugin folder $FEDLIB_NCCL_PLUGIN_DIR (ALCF's aws-ofi-nccl); set FEDLIB_NCCL_PLUGIN_DIR" >&2
    export LD_LIBRARY_PATH="$FEDLIB_NCCL_PLUGIN_DIR:/soft/libraries/hwloc/lib/:${LD_LIBRARY_PATH:-}"
    export NCCL_NET="${NCCL_NET:-AWS Libfabric}" NCCL_COLLNET_ENABLE="${NCCL_COLLNET_ENABLE:-1}"
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}" NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}"
    export FI_CXI_DEFAULT_CQ_SIZE="${FI_CXI_DEFAULT_CQ_SIZE:-131072}" ;;
  aurora)      # ALCF "oneCCL": the minimal set, "essential for functionality"
    export CCL_PROCESS_LAUNCHER="${CCL_PROCESS_LAUNCHER:-pmix}" CCL_ATL_TRANSPORT="${CCL_ATL_TRANSPORT:-mpi}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}" CCL_KVS_MODE="${CCL_KVS_MODE:-mpi}"
    export FEDLIB_IFNAME="${FEDLIB_IFNAME:-hsn0}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}" ;;
esac
# Cray MPICH with MPICH_GPU_SUPPORT_ENABLED=1 but without its GTL library linked "will print an
# error message and exit immediately" (OLCF): GPU-aware MPI only when mpi4py's MPI links GTL
if [[ "$FEDLIB_SYSTEM" == frontier || "$FEDLIB_SYSTEM" == perlmutter ]] && [[ -z "${MPICH_GPU_SUPPORT_ENABLED:-}" ]]; then
  if fedlib_gtl; then export MPICH_GPU_SUPPORT_ENABLED=1; fi
fi
# --- end network ----------------------------------------------------------------------------------

source "$(dirname "${BASH_SOURCE[0]}")/jobs.sh"
