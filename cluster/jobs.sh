# The steps a cluster/ recipe runs, as functions (sourced by cluster/env.sh): stage the venv,
# run fedlib under the launcher with the job's signals handled, start ipyparallel engines.

FEDLIB_ON_EXIT=()   # cleanups, last in first out, when the batch script exits
fedlib_exit() {
  local i
  for (( i = ${#FEDLIB_ON_EXIT[@]} - 1; i >= 0; i-- )); do eval "${FEDLIB_ON_EXIT[i]}" || true; done
}
trap fedlib_exit EXIT

# fedlib_stage PER_NODE...: with STAGE=1, the ranks import from node-local storage instead of the
# shared file system (hundreds of ranks importing torch from Lustre/NFS is a metadata storm).
# PER_NODE runs a command once on every node of the job (`srun -N n --ntasks-per-node=1`,
# `mpiexec -n n --ppn 1`). OLCF: a tar of the environment, `sbcast` to the NVMe (/mnt/bb/$USER,
# allocated with `-C nvme`), unpacked once per node; ALCF Aurora: Copper, the venv's packages
# read through its cooperative cache; elsewhere the tar is unpacked on each node's local disk
# (FEDLIB_STAGE_DIR). FEDLIB_STAGE_BASE=env.tar.gz (a `conda pack` of the environment the venv
# was made from, OLCF's recipe) stages that too and points the venv at it. Sets FEDLIB_PYTHON.
# Measured here (2.2 GB, 59,548 files, onto tmpfs): 46 s; importing fedlib.runner makes 39,601
# file-system calls per rank, which at scale all land on the shared file system without it.
fedlib_stage() {
  [[ "${STAGE:-0}" == 1 ]] || return 0
  local venv site tar dest t0=$SECONDS
  venv=$(cd .venv && pwd -P)
  if [[ "$FEDLIB_SYSTEM" == aurora ]]; then
    module load copper
    launch_copper.sh
    FEDLIB_ON_EXIT+=("stop_copper.sh")
    site=$("$FEDLIB_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    export PYTHONPATH="${COPPER_ROOT:-/tmp/${USER}/copper}${site}${PYTHONPATH:+:$PYTHONPATH}"
    echo "fedlib: STAGE=1: $site through Copper" >&2
    return 0
  fi
  case "$FEDLIB_SYSTEM" in
    frontier) dest=${FEDLIB_STAGE_DIR:-/mnt/bb/${USER}} ;;
    polaris)  dest=${FEDLIB_STAGE_DIR:-/local/scratch/${USER}} ;;
    *)        dest=${FEDLIB_STAGE_DIR:-${TMPDIR:-/tmp}/fedlib-stage-${USER:-me}} ;;
  esac
  tar="$SHARED/fedlib-venv-${SLURM_JOB_ID:-${PBS_JOBID:-$$}}.tar"
  tar -cf "$tar" -C "$(dirname "$venv")" "$(basename "$venv")"
  FEDLIB_ON_EXIT+=("rm -f '$tar'")
  _fedlib_spread "$tar" "$dest/venv.tar" "$@"
  "$@" bash -c "tar -xf '$dest/venv.tar' -C '$dest' && rm -f '$dest/venv.tar' && rm -rf '$dest/venv' && \
    mv -T '$dest/$(basename "$venv")' '$dest/venv'"
  if [[ -n "${FEDLIB_STAGE_BASE:-}" ]]; then   # the venv's base environment (conda pack)
    _fedlib_spread "$FEDLIB_STAGE_BASE" "$dest/base.tar.gz" "$@"
    "$@" bash -c "mkdir -p '$dest/base' && tar -xzf '$dest/base.tar.gz' -C '$dest/base' && \
      '$dest/base/bin/python' '$dest/base/bin/conda-unpack' && ln -sfn '$dest/base/bin/python' '$dest/venv/bin/python' && \
      sed -i 's|^home = .*|home = $dest/base/bin|' '$dest/venv/pyvenv.cfg'"
  fi
  FEDLIB_PYTHON="$dest/venv/bin/python"
  echo "fedlib: STAGE=1: $venv -> $dest/venv on every node in $(( SECONDS - t0 )) s" >&2
}

_fedlib_spread() {  # _fedlib_spread FILE DEST PER_NODE...: FILE to DEST on every node
  local file=$1 to=$2; shift 2
  if [[ "$FEDLIB_SYSTEM" == frontier ]] && command -v sbcast >/dev/null; then
    "$@" mkdir -p "$(dirname "$to")"
    sbcast -pf "$file" "$to" || { echo "fedlib: sbcast $file failed" >&2; return 1; }  # OLCF: check it
  else
    "$@" bash -c "mkdir -p '$(dirname "$to")' && cp '$file' '$to'"
  fi
}

# fedlib_run LAUNCHER_ARRAY RUN_ARGS...: `fedlib run RUN_ARGS --resume auto` under the launcher, in
# the background so that this shell handles the job's signals while it waits. SIGTERM/SIGINT
# (PBS walltime and qdel, scancel, preemption) become SIGUSR1 to the launcher, which forwards it
# to the ranks (Open MPI, srun, PALS): they finish the round, checkpoint it, release the run's
# lock and exit 75. The launcher runs in its own session, so a signal to the job's process group
# reaches this shell and not it: Open MPI's mpiexec, signalled itself, ends at once with status 1
# and kills its ranks a moment later, mid-round, lock held. Where the launcher ends on the signal
# anyway, `fedlib stopped` waits for the run's lock and says where the run stands (exit 75:
# requeue with --resume auto).
fedlib_run() {
  local -n _launcher=$1
  shift
  local pid rc=0 stopping=""
  local own=()
  command -v setsid >/dev/null && own=(setsid)   # (no job control here: setsid execs in place)
  "${own[@]}" "${_launcher[@]}" "$FEDLIB_PYTHON" -m fedlib run "$@" --resume auto --quiet &
  pid=$!
  trap 'stopping=1; kill -USR1 "$pid" 2>/dev/null || true' TERM INT
  trap 'stopping=1; fedlib_time_limit "$pid"' USR1
  while :; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # else a trapped signal interrupted the wait
  done
  trap - TERM INT USR1
  if [[ -n "$stopping" && "$rc" != 75 ]]; then
    "$FEDLIB_PYTHON" -m fedlib stopped "$@" && rc=0 || rc=$?
  fi
  return "$rc"
}

# the time limit is near (Slurm --signal=B:USR1@300): requeue the job (the next start resumes)
# and stop the ranks after their round, so the requeue loses nothing
fedlib_time_limit() {
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    echo "fedlib: time limit near, requeueing ${SLURM_JOB_ID}"
    scontrol requeue "${SLURM_JOB_ID}"
  fi
  kill -USR1 "$1" 2>/dev/null || true
}

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
  mkdir -p "$IPYTHONDIR/profile_$profile"
  cat > "$IPYTHONDIR/profile_$profile/ipcluster_config.py" <<PY
c = get_config()  # noqa: F821 - written by cluster/jobs.sh
c.Cluster.engine_launcher_class = "mpi"
c.MPILauncher.mpi_cmd = ["$cmd"]
c.MPILauncher.mpi_args = [$args]
c.Cluster.controller_ip = "*"
PY
  FEDLIB_ON_EXIT+=("ipcluster stop --profile='$profile' >/dev/null 2>&1")
  # connection files (the controller's addresses and message key) readable by the user alone
  (umask 077; ipcluster start --daemonize --profile="$profile" --n="$n")
  chmod 600 "$IPYTHONDIR/profile_$profile/security/"*.json 2>/dev/null || true
  "$FEDLIB_PYTHON" - <<PY
import ipyparallel as ipp
ipp.Client(profile="$profile").wait_for_engines($n, timeout=900)
print("engines up: profile=$profile, n=$n")
PY
}

# fedlib_notebooks PROFILE: KEEP=1 leaves the engines up for JupyterLab (engines_mode="connect",
# this profile, the same IPYTHONDIR) until they sit idle KEEP_IDLE_MIN minutes (default 30: an
# allocation is billed while it waits); else re-runs the notebooks on them (PROFILE_NAME: full).
fedlib_notebooks() {
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "engines up: IPYTHONDIR=$IPYTHONDIR profile=$1; use engines_mode='connect'"
    "$FEDLIB_PYTHON" -m fedlib.lab.engines idle --profile "$1" --minutes "${KEEP_IDLE_MIN:-30}"
  else
    FEDLIB_ENGINES=connect FEDLIB_IPP_PROFILE="$1" \
      "$FEDLIB_PYTHON" -m fedlib reproduce --profile "${PROFILE_NAME:-full}"
  fi
}
