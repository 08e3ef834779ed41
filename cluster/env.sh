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
  ipcluster start --daemonize --profile="$profile" --n="$n"
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
