# Sourced by the cluster/ recipes: caches and the ipyparallel engines, shared by Slurm, PBS and
# Open MPI. Override any variable before sourcing (or in the job's environment).
#
#   FEDLIB_CACHE  tokenized data; node-local by default (each node's first rank writes it once)
#   HF_HOME       Hugging Face models/data sets; SHARED (download on a login node, compute nodes
#                 are often offline: HF_HUB_OFFLINE=1)
#   IPYTHONDIR    ipyparallel profiles and connection files; SHARED (engines on other nodes read
#                 them). $HOME is read-only on some compute nodes (Frontier): use scratch.
#   MIOPEN_USER_DB_PATH, MIOPEN_CUSTOM_CACHE_DIR  MIOpen's caches (ROCm); node-local
SHARED="${FEDLIB_SHARED:-${SCRATCH:-${MEMBERWORK:-$PWD}}}"
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

# --- network, per site (fedlib.wire / sites-install) ------------------------------------------
# NCCL/RCCL and torch.distributed's rendezvous on the high-speed network (Slingshot hsn*), not the
# management Ethernet the host name resolves to; libfabric (CXI) settings the sites document for
# NCCL/RCCL over the aws-ofi plugin. FEDLIB_SYSTEM=frontier|perlmutter|polaris|aurora picks the
# block (guessed from LMOD_SYSTEM_NAME / NERSC_HOST / the host name); each variable already set
# in the job's environment wins. FEDLIB_SYSTEM=none sets nothing.
fedlib_system() {
  local h
  h="${LMOD_SYSTEM_NAME:-} ${NERSC_HOST:-} $(hostname -f 2>/dev/null || hostname)"
  case "$h" in
    *frontier*) echo frontier ;; *perlmutter*) echo perlmutter ;;
    *polaris*) echo polaris ;; *aurora*) echo aurora ;; *) echo none ;;
  esac
}
FEDLIB_SYSTEM="${FEDLIB_SYSTEM:-$(fedlib_system)}"
case "$FEDLIB_SYSTEM" in
  frontier)    # OLCF: RCCL + aws-ofi-rccl over CXI; GPU-aware Cray MPICH (GTL from craype-accel-amd-gfx90a)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn0}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-3}" NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    export FI_CXI_ATS="${FI_CXI_ATS:-0}" FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-memhooks}"
    export MPICH_GPU_SUPPORT_ENABLED="${MPICH_GPU_SUPPORT_ENABLED:-1}" ;;
  perlmutter)  # NERSC: NCCL + aws-ofi-nccl over CXI (the pytorch/nccl modules set these too)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}" NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}"
    export MPICH_GPU_SUPPORT_ENABLED="${MPICH_GPU_SUPPORT_ENABLED:-1}" ;;
  polaris)     # ALCF: NCCL over the aws-ofi-nccl plugin on Slingshot (hsn0, hsn1)
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}" NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}"
    export FI_CXI_DEFAULT_CQ_SIZE="${FI_CXI_DEFAULT_CQ_SIZE:-131072}" ;;
  aurora)      # ALCF: oneCCL over CXI; the frameworks module sets the CCL_*/FI_* tuning itself
    export FEDLIB_IFNAME="${FEDLIB_IFNAME:-hsn0}" GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-hsn0}"
    export FI_CXI_DEFAULT_CQ_SIZE="${FI_CXI_DEFAULT_CQ_SIZE:-131072}" ;;
  none) ;;
  *) echo "cluster/env.sh: FEDLIB_SYSTEM=$FEDLIB_SYSTEM: choose frontier, perlmutter, polaris, aurora or none" >&2
     return 2 ;;
esac
# --- end network -------------------------------------------------------------------------------

# fedlib_engines PROFILE N LAUNCHER [ARGS...]: one ipyparallel engine per MPI rank, started by
# ipyparallel's own MPI launcher with the site's launcher command (`srun`, PALS `mpiexec`,
# Open MPI `mpiexec`): it runs `LAUNCHER -n N ARGS... python -m ipyparallel.engine --mpi`.
# Returns once all N engines are registered; `ipcluster stop` runs when the script exits, and
# the batch system ends whatever is left with the job.
fedlib_engines() {
  local profile=$1 n=$2 cmd=$3; shift 3
  local args="" a
  for a in "$@"; do args+="'$a', "; done
  ipython profile create --parallel --profile="$profile" >/dev/null 2>&1 || true
  cat > "$IPYTHONDIR/profile_$profile/ipcluster_config.py" <<PY
c = get_config()  # noqa: F821 - written by cluster/env.sh
c.Cluster.engine_launcher_class = "mpi"
c.MPILauncher.mpi_cmd = ["$cmd"]
c.MPILauncher.mpi_args = [$args]
c.Cluster.controller_ip = "*"
PY
  # shellcheck disable=SC2064 - expand the profile now
  trap "ipcluster stop --profile='$profile' >/dev/null 2>&1 || true" EXIT
  # connection files (the controller's addresses and message key) readable by the user alone
  (umask 077; ipcluster start --daemonize --profile="$profile" --n="$n")
  chmod 600 "$IPYTHONDIR/profile_$profile/security/"*.json 2>/dev/null || true
  python - <<PY
import ipyparallel as ipp
ipp.Client(profile="$profile").wait_for_engines($n, timeout=900)
print("engines up: profile=$profile, n=$n")
PY
}

# fedlib_notebooks PROFILE: KEEP=1 leaves the engines up for JupyterLab (engines_mode="connect",
# this profile, the same IPYTHONDIR); else re-runs the notebooks on them (PROFILE_NAME: full).
fedlib_notebooks() {
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "engines up: IPYTHONDIR=$IPYTHONDIR profile=$1; use engines_mode='connect'"
    sleep infinity
  else
    FEDLIB_ENGINES=connect FEDLIB_IPP_PROFILE="$1" \
      python -m fedlib reproduce --profile "${PROFILE_NAME:-full}"
  fi
}
