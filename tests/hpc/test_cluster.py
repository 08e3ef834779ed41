"""cluster/ templates, run for real up to the launcher: bash parses them, and with stub `srun` /
PALS `mpiexec` / `qsub` / `sbatch` / `module` / `python` ... on PATH (each records its argv, and
its environment in a file beside the log) a Slurm or PBS job's own environment drives them to
the command lines they launch: the site's modules before the venv, doctor with the job's config,
then the run with `--resume auto`. The sites' rules each test holds them to are quoted in
tests/hpc/site_docs.py."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hpc import site_docs as docs

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ["cluster/slurm.sbatch", "cluster/pbs.sh", "cluster/openmpi.sh", "cluster/env.sh",
             "cluster/jobs.sh", "cluster/submit.sh"]

# argv to the log, the environment to <log>.env.<line>; per-node commands (one node here) run
STUB = """#!/bin/bash
n=$(cat "$STUB_LOG" 2>/dev/null | wc -l)
env > "$STUB_LOG.env.$n"
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [[ "$(basename "$0")" == python && "$*" == "-m fedlib.hpc.mpilib gtl" ]]; then echo "${STUB_GTL:-no}"; fi
if [[ " $* " == *" --ntasks-per-node=1 "* || " $* " == *" --ppn 1 "* ]]; then
  while [[ "${1:-}" == -* ]]; do case $1 in -n|--ppn) shift 2 ;; *) shift ;; esac; done
  exec "$@"
fi
if [[ "$(basename "$0")" == sbcast ]]; then cp "$2" "$3"; fi
if [[ " $* " == *" run "* && -n "${STUB_SLEEP:-}" ]]; then
  echo $$ > "$STUB_LOG.pid"; exec sleep "$STUB_SLEEP"
fi
"""
STUBS = ("srun", "mpiexec", "scontrol", "qsub", "sbatch", "sbcast", "module", "conda", "python",
         "launch_copper.sh", "stop_copper.sh", "ipython", "ipcluster")


@pytest.mark.parametrize("path", TEMPLATES)
def test_templates_parse(path):
    subprocess.run(["bash", "-n", str(ROOT / path)], check=True)


def test_templates_carry_the_site_lines():
    slurm = (ROOT / "cluster/slurm.sbatch").read_text()
    for line in ("#SBATCH --account=", "##SBATCH --constraint=gpu", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@300", "fedlib_run SRUN"):
        assert line in slurm, line
    pbs = (ROOT / "cluster/pbs.sh").read_text()
    assert "#PBS -r y" in pbs and "3,2,1,0" in pbs and "list:1-8:9-16:" in pbs
    assert "filesystems=home:eagle" not in pbs  # chosen per system by cluster/submit.sh
    env = (ROOT / "cluster/env.sh").read_text()
    assert "NCCL_SOCKET_IFNAME" in env and "FI_CXI_DISABLE_HOST_REGISTER" in env
    assert "memhooks}" not in env and "FI_CXI_ATS" not in env  # docs.FRONTIER_RCCL


def _job(tmp_path: Path, **env: str) -> tuple[Path, dict[str, str]]:
    """A submit directory with the templates and a stand-in venv; stubs first on PATH."""
    work = tmp_path / "work"
    (work / ".venv/bin").mkdir(parents=True)
    (work / ".venv/bin/activate").write_text('echo "activate .venv" >> "$STUB_LOG"\n')
    shutil.copytree(ROOT / "cluster", work / "cluster")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in STUBS:
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    (stubs / "lscpu").write_text("#!/bin/bash\necho 'Thread(s) per core:  2'\n")
    (stubs / "lscpu").chmod(0o755)
    launch = ("SLURM_", "PBS_", "OMPI_", "NCCL_", "FI_", "CCL_", "MPICH_", "HIP_", "ROCR_", "MEMBERWORK",
              "FEDLIB_", "PYTHONPATH")
    base = {k: v for k, v in os.environ.items() if not k.startswith(launch)}
    base.pop("OMP_NUM_THREADS", None)
    base.pop("CUDA_VISIBLE_DEVICES", None)
    full = {**base, "PATH": f"{stubs}:/usr/bin:/bin", "STUB_LOG": str(tmp_path / "argv.log"),
            "SCRATCH": str(tmp_path / "scratch"), "TMPDIR": str(tmp_path), "FEDLIB_SYSTEM": "none",
            "USER": "me", **env}
    return work, full


def _log(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv.log").read_text().splitlines()


def _launched(tmp_path: Path, cmd: str) -> list[tuple[str, dict[str, str]]]:
    """(argv, environment) of each logged call of `cmd`."""
    out = []
    for i, line in enumerate(_log(tmp_path)):
        if line.split()[0] == cmd:
            text = (tmp_path / f"argv.log.env.{i}").read_text()
            out.append((line, dict(x.split("=", 1) for x in text.splitlines() if "=" in x)))
    return out


def _slurm(tmp_path: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    job = {"SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "2", "SLURM_CPUS_ON_NODE": "128"}
    work, full = _job(tmp_path, **{**job, **env})
    full["SLURM_SUBMIT_DIR"] = str(work)
    return subprocess.run(["bash", "cluster/slurm.sbatch", *args], cwd=work, env=full, check=check,
                          capture_output=True, text=True, timeout=60)


def test_slurm_perlmutter_like_job(tmp_path):
    """4 GPUs and 64 cores x 2 threads: 4 ranks x 32 CPUs, 16 torch threads (physical cores),
    every GPU visible to every rank (--gpus-per-node), the site's network settings."""
    _slurm(tmp_path, "params/x.yaml", "--set", "federation.rounds=3", FEDLIB_SYSTEM="perlmutter")
    srun = ("srun --ntasks=8 --ntasks-per-node=4 --cpus-per-task=32 --cpu-bind=cores --gpus-per-node=4 "
            "python -m fedlib")
    (doctor, env), (run, _) = _launched(tmp_path, "srun")
    assert [doctor, run] == [f"{srun} doctor params/x.yaml",
                             f"{srun} run params/x.yaml --set federation.rounds=3 --resume auto --quiet"]
    assert (env["OMP_NUM_THREADS"], env["NCCL_SOCKET_IFNAME"], env["FI_MR_CACHE_MONITOR"]) == (
        "16", "hsn", "userfaultfd")
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert _log(tmp_path)[:2] == ["module load pytorch", "activate .venv"]  # modules before the venv


def test_slurm_frontier_like_array_task_runs_its_own_config(tmp_path):
    _slurm(tmp_path, "a.yaml", "b.yaml", "c.yaml", SLURM_ARRAY_TASK_ID="1", SLURM_JOB_NUM_NODES="1",
           SLURM_CPUS_ON_NODE="56", GPUS_PER_NODE="8", GPU_BIND="task", THREADS_PER_CORE="1")
    srun = ("srun --ntasks=8 --ntasks-per-node=8 --cpus-per-task=7 --cpu-bind=cores --gpus-per-task=1 "
            "--gpu-bind=closest python -m fedlib")
    assert [line for line, _ in _launched(tmp_path, "srun")] == [
        f"{srun} doctor b.yaml", f"{srun} run b.yaml --resume auto --quiet"]
    res = _slurm(tmp_path / "again", "a.yaml", "b.yaml", "c.yaml", check=False)  # no array: refused
    assert res.returncode == 2
    assert res.stderr.strip() == "3 configs: submit them as an array (sbatch --array=0-2)"


def test_frontier_job_loads_rocm_and_the_rccl_plugin_and_sets_olcfs_network(tmp_path):
    """docs.FRONTIER_RCCL: the rccl-net-plugin module after rocm, OLCF's variables, never
    memhooks, no FI_CXI_ATS; the alt_read rendezvous only with --network=disable_rdzv_get
    (cluster/submit.sh sets FEDLIB_RDZV=alt_read with it). docs.CRAY_GTL: GPU-aware MPI only
    when mpi4py's MPI links GTL. docs.FRONTIER_NUMA: GPU_BIND=node orders the GCDs by L3."""
    _slurm(tmp_path, SLURM_CPUS_ON_NODE="56", FEDLIB_SYSTEM="frontier", GPU_BIND="node")
    log = _log(tmp_path)
    assert log[:2] == ["module load PrgEnv-gnu rocm rccl-net-plugin craype-accel-amd-gfx90a",
                       "activate .venv"]
    (doctor, env), _ = _launched(tmp_path, "srun")
    assert {k: env.get(k) for k in docs.FRONTIER_RCCL_ENV} == docs.FRONTIER_RCCL_ENV
    assert "FI_CXI_ATS" not in env and "FI_CXI_RDZV_PROTO" not in env
    assert "MPICH_GPU_SUPPORT_ENABLED" not in env  # STUB_GTL=no: Cray MPICH would exit in MPI_Init
    assert env["HIP_VISIBLE_DEVICES"] == docs.FRONTIER_GCD_ORDER and "--gpus-per-node=8" in doctor
    _slurm(tmp_path / "gtl", SLURM_CPUS_ON_NODE="56", FEDLIB_SYSTEM="frontier", STUB_GTL="yes",
           FEDLIB_RDZV="alt_read", FI_CXI_RDZV_PROTO="alt_read")
    (doctor, env), _ = _launched(tmp_path / "gtl", "srun")
    assert env["MPICH_GPU_SUPPORT_ENABLED"] == "1" and "--gpus-per-task=1 --gpu-bind=closest" in doctor
    # docs.FRONTIER_NUMA: OMP_NUM_THREADS=7 with -c7 (Slurm counts cores there; lscpu says 2 per core)
    assert "--cpus-per-task=7" in doctor and env["OMP_NUM_THREADS"] == "7"
    assert {k: env.get(k) for k in docs.FRONTIER_RDZV_ENV} == docs.FRONTIER_RDZV_ENV


def test_frontier_shared_files_go_to_memberwork_of_the_project(tmp_path):
    """docs.FRONTIER_STORAGE: $MEMBERWORK/<projid> is the documented scratch (home is writable
    on the compute nodes now; it is not where a job's files belong)."""
    work = tmp_path / "orion"
    _slurm(tmp_path, FEDLIB_SYSTEM="frontier", SCRATCH="", MEMBERWORK=str(work), SLURM_JOB_ACCOUNT="ABC123")
    (_, env), _ = _launched(tmp_path, "srun")
    assert env["IPYTHONDIR"] == f"{work}/abc123/.ipython"
    assert env["HF_HOME"] == f"{work}/abc123/.cache/huggingface"


def test_slurm_requeues_itself_on_usr1_and_stops_the_ranks(tmp_path):
    """--signal=B:USR1@300 reaches the batch shell while srun runs: it requeues the job and
    forwards USR1 to srun (the ranks checkpoint their round); then `fedlib stopped` reports."""
    work, env = _job(tmp_path, SLURM_JOB_ID="79", SLURM_JOB_NUM_NODES="1", SLURM_CPUS_ON_NODE="8",
                     GPUS_PER_NODE="0", STUB_SLEEP="30")
    env["SLURM_SUBMIT_DIR"] = str(work)
    proc = subprocess.Popen(["bash", "cluster/slurm.sbatch"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (tmp_path / "argv.log.pid").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=30)
    assert "time limit near, requeueing 79" in out
    assert _log(tmp_path)[-2:] == ["scontrol requeue 79", "python -m fedlib stopped params/quickstart.yaml"]


@pytest.mark.parametrize("system, bind, cvd, modules", [
    ("polaris", "--depth 8 --cpu-bind depth --env OMP_NUM_THREADS=8", "3,2,1,0",
     ["module use /soft/modulefiles", "module load conda", "conda activate base"]),   # docs.POLARIS_MODULES
    ("aurora", "--cpu-bind list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100 "
               "--env OMP_NUM_THREADS=8", None, ["module load frameworks"]),          # docs.AURORA_MODULES
])
def test_pbs_pals_jobs_load_the_site_modules_then_the_venv(tmp_path, system, bind, cvd, modules):
    work, env = _job(tmp_path, PBS_JOBID="123.server", SYSTEM=system,
                     ARGS="params/q.yaml --set federation.rounds=2")
    env["PBS_O_WORKDIR"] = str(work)
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x1\nx1\nx2\n")
    env["PBS_NODEFILE"] = str(nodefile)
    subprocess.run(["bash", "cluster/pbs.sh"], cwd=work, env=env, check=True, timeout=60)
    n = 8 if system == "polaris" else 24
    cmd = f"mpiexec -n {n} --ppn {n // 2} {bind} python -m fedlib"
    calls = _launched(tmp_path, "mpiexec")
    assert [line for line, _ in calls] == [
        "mpiexec --version", f"{cmd} doctor params/q.yaml",
        f"{cmd} run params/q.yaml --set federation.rounds=2 --resume auto --quiet"]
    assert calls[1][1].get("CUDA_VISIBLE_DEVICES") == cvd
    assert _log(tmp_path)[:len(modules) + 1] == [*modules, "activate .venv"]
    if system == "polaris":  # docs.POLARIS_NCCL: the AWS libfabric plugin, else sockets
        env = calls[1][1]
        assert {k: env.get(k) for k in docs.POLARIS_NCCL_ENV} == docs.POLARIS_NCCL_ENV
        plugin = "/soft/libraries/aws-ofi-nccl/v1.9.1-aws/lib:/soft/libraries/hwloc/lib/:"
        assert env["LD_LIBRARY_PATH"].startswith(plugin)
    else:  # docs.AURORA_ONECCL: the minimal set, set by fedlib
        env = calls[1][1]
        assert {k: env.get(k) for k in docs.AURORA_ONECCL_ENV} == docs.AURORA_ONECCL_ENV


def test_stage_copies_the_venv_to_node_local_storage_and_runs_it_there(tmp_path):
    """docs.FRONTIER_SBCAST: STAGE=1 sbcasts a tar of the environment to each node's NVMe and
    unpacks it once per node; the ranks then run the staged interpreter."""
    bb = tmp_path / "bb"
    _slurm(tmp_path, FEDLIB_SYSTEM="frontier", STAGE="1", FEDLIB_STAGE_DIR=str(bb), STUB_GTL="yes")
    log = _log(tmp_path)
    sbcast = next(line for line in log if line.startswith("sbcast"))
    assert sbcast.startswith("sbcast -pf ") and sbcast.endswith(f"{bb}/venv.tar")
    assert (bb / "venv/bin/activate").is_file()  # unpacked "on the node"
    run = [line for line, _ in _launched(tmp_path, "srun") if " run " in line]
    assert run and f"{bb}/venv/bin/python -m fedlib run" in run[0]


def test_stage_for_real_a_venv_runs_from_its_copy(tmp_path):
    """The staging step itself, on this machine (one node, no launcher): a real venv is copied
    and its interpreter answers from the copy."""
    work = tmp_path / "work"
    work.mkdir()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(work / ".venv")], check=True)
    dest = tmp_path / "node-local"
    script = (f"set -e; source {ROOT}/cluster/env.sh; fedlib_stage; "
              "$FEDLIB_PYTHON -c 'import sys; print(sys.prefix)'")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "USER": "me",
           "FEDLIB_SYSTEM": "none", "STAGE": "1", "FEDLIB_STAGE_DIR": str(dest),
           "FEDLIB_SHARED": str(tmp_path)}
    res = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(dest / "venv")
    assert "fedlib: STAGE=1:" in res.stderr and not list(tmp_path.glob("fedlib-venv-*.tar"))  # tar removed


def _submit(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    work, full = _job(tmp_path, **env)
    return subprocess.run(["bash", "cluster/submit.sh", *args], cwd=work, env=full, capture_output=True,
                          text=True, timeout=60)


def _fits(table: list[tuple[str, int, int, int]], nodes: int, hours: float) -> str | None:
    """The first row of a site's table (tests/hpc/site_docs.py) that takes the request."""
    return next((q for q, lo, hi, h in table if lo <= nodes <= hi and hours <= h), None)


@pytest.mark.parametrize("system, table, fs", [("polaris", docs.POLARIS_TABLE, "home:eagle"),
                                                ("aurora", docs.AURORA_TABLE, "home:flare")])
def test_submit_picks_the_queue_and_file_systems_from_the_site_table(tmp_path, system, table, fs):
    """docs.POLARIS_QUEUES / docs.AURORA_QUEUES / docs.AURORA_FILESYSTEMS, through a qsub stub:
    every node count and walltime lands in the first queue whose limits take it, or is refused
    in one line naming the rules."""
    for nodes, wall, hours in [(1, "01:00:00", 1), (2, "00:30:00", 0.5), (3, "01:00:00", 1),
                               (4, "02:00:00", 2), (9, "02:00:00", 2), (10, "01:00:00", 1),
                               (20, "02:00:00", 2), (30, "05:00:00", 5), (256, "01:00:00", 1),
                               (300, "10:00:00", 10), (600, "30:00:00", 30)]:
        case = tmp_path / f"{nodes}-{hours}"
        res = _submit(case, system, str(nodes), "PROJ", "params/q.yaml", WALLTIME=wall)
        want = _fits(table, nodes, hours)
        if want is None:
            assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (nodes, wall)
            assert res.stderr.startswith(f"cluster/submit.sh: {system}: no queue takes {nodes} node(s) "
                                         f"for {wall} (")
            assert not (case / "argv.log").exists()  # nothing reached the scheduler
            continue
        assert res.returncode == 0, res.stderr
        (qsub,) = _log(case)
        assert qsub == (f"qsub -A PROJ -q {want} -l select={nodes}:system={system} -l place=scatter "
                        f"-l walltime={wall} -l filesystems={fs} "
                        f"-v SYSTEM={system},NOTEBOOKS=0,KEEP=0,STAGE=0,ARGS=params/q.yaml cluster/pbs.sh")


def test_submit_refuses_polaris_prod_below_ten_nodes(tmp_path):
    """README's old `qsub -q prod` with select=2: docs.POLARIS_QUEUES, prod takes 10-496 nodes."""
    res = _submit(tmp_path, "polaris", "2", "PROJ", QUEUE="prod")
    assert res.returncode == 2 and res.stderr.strip() == (
        "cluster/submit.sh: polaris: no queue prod takes 2 node(s) for 01:00:00 "
        "(prod 10-24 nodes <= 3 h, prod 25-99 nodes <= 6 h, prod 100-496 nodes <= 24 h)")


def test_submit_frontier_adds_olcfs_flags_and_checks_the_bins(tmp_path):
    """docs.FRONTIER_RCCL (--network=disable_rdzv_get with alt_read), docs.FRONTIER_SBCAST
    (-C nvme for /mnt/bb), docs.FRONTIER_BINS (1-91 nodes: 2 h)."""
    res = _submit(tmp_path, "frontier", "2", "abc123", "params/q.yaml", STAGE="1")
    assert res.returncode == 0, res.stderr
    assert _log(tmp_path) == [
        "sbatch -A abc123 -N 2 -t 01:00:00 --network=disable_rdzv_get -C nvme "
        "--export=ALL,FEDLIB_SYSTEM=frontier,NOTEBOOKS=0,KEEP=0,STAGE=1,FEDLIB_RDZV=alt_read,GPUS_PER_NODE=8 "
        "cluster/slurm.sbatch params/q.yaml"]
    res = _submit(tmp_path / "long", "frontier", "50", "abc123", WALLTIME="04:00:00")
    assert res.returncode == 2
    assert "no queue takes 50 node(s) for 04:00:00 (batch 1-91 nodes <= 2 h" in res.stderr


def test_kept_engines_on_slurm_start_with_srun_and_stop_when_idle(tmp_path):
    """NOTEBOOKS=1 KEEP=1: ipyparallel's MPI launcher is srun, and the job waits for the engines
    to sit idle KEEP_IDLE_MIN minutes (not `sleep infinity` on a billed allocation), then stops them."""
    _slurm(tmp_path, NOTEBOOKS="1", KEEP="1", KEEP_IDLE_MIN="20", GPUS_PER_NODE="0")
    log = _log(tmp_path)
    assert "python -m fedlib.lab.engines idle --profile fedlib-77 --minutes 20" in log
    assert log[-1] == "ipcluster stop --profile=fedlib-77"
    config = (tmp_path / "scratch/.ipython/profile_fedlib-77/ipcluster_config.py").read_text()
    assert 'c.MPILauncher.mpi_cmd = ["srun"]' in config
