"""cluster/ templates, run for real up to the launcher: bash parses them, they carry the lines a
site needs, and with stub `srun` / PALS `mpiexec` / `scontrol` / `lscpu` on PATH (each records its
argv and environment) a Slurm or PBS job's own environment drives them to the python command
lines they launch: doctor with the job's config first, then the run with `--resume auto`."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ["cluster/slurm.sbatch", "cluster/pbs.sh", "cluster/openmpi.sh", "cluster/env.sh"]

STUB = """#!/bin/bash
if [[ "$1" == --version ]]; then echo "mpiexec version 1.2 (PALS)"; exit 0; fi
echo "$(basename "$0") $* | OMP_NUM_THREADS=${OMP_NUM_THREADS:-} \
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-} \
FI_MR_CACHE_MONITOR=${FI_MR_CACHE_MONITOR:-}" >> "$STUB_LOG"
if [[ " $* " == *" run "* && -n "${STUB_SLEEP:-}" ]]; then
  echo $$ > "$STUB_LOG.pid"; exec sleep "$STUB_SLEEP"
fi
"""


@pytest.mark.parametrize("path", TEMPLATES)
def test_templates_parse(path):
    subprocess.run(["bash", "-n", str(ROOT / path)], check=True)


def test_templates_carry_the_site_lines():
    slurm = (ROOT / "cluster/slurm.sbatch").read_text()
    for line in ("#SBATCH --account=", "##SBATCH --constraint=gpu", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@300", "scontrol requeue"):
        assert line in slurm, line
    pbs = (ROOT / "cluster/pbs.sh").read_text()
    assert "#PBS -r y" in pbs and "3,2,1,0" in pbs and "list:1-8:9-16:" in pbs
    env = (ROOT / "cluster/env.sh").read_text()
    assert "NCCL_SOCKET_IFNAME" in env and "FI_CXI_DISABLE_HOST_REGISTER" in env


def _job(tmp_path: Path, **env: str) -> tuple[Path, dict[str, str]]:
    """A submit directory with the templates and a stand-in venv; stubs first on PATH."""
    work = tmp_path / "work"
    (work / ".venv/bin").mkdir(parents=True)
    (work / ".venv/bin/activate").write_text("")
    shutil.copytree(ROOT / "cluster", work / "cluster")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("srun", "mpiexec", "scontrol"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    (stubs / "lscpu").write_text("#!/bin/bash\necho 'Thread(s) per core:  2'\n")
    (stubs / "lscpu").chmod(0o755)
    launch = ("SLURM_", "PBS_", "OMPI_", "NCCL_", "FI_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(launch)}
    base.pop("OMP_NUM_THREADS", None)
    base.pop("CUDA_VISIBLE_DEVICES", None)
    full = {**base, "PATH": f"{stubs}:{base['PATH']}", "STUB_LOG": str(tmp_path / "argv.log"),
            "SCRATCH": str(tmp_path / "scratch"), "TMPDIR": str(tmp_path), "FEDLIB_SYSTEM": "none", **env}
    return work, full


def _log(tmp_path: Path) -> list[str]:
    return (tmp_path / "argv.log").read_text().splitlines()


def test_slurm_perlmutter_like_job(tmp_path):
    """4 GPUs and 64 cores x 2 threads: 4 ranks x 32 CPUs, 16 torch threads (physical cores),
    every GPU visible to every rank (--gpus-per-node), the site's network settings."""
    work, env = _job(tmp_path, SLURM_SUBMIT_DIR="", SLURM_JOB_ID="77", SLURM_JOB_NUM_NODES="2",
                     SLURM_CPUS_ON_NODE="128", FEDLIB_SYSTEM="perlmutter")
    env["SLURM_SUBMIT_DIR"] = str(work)
    subprocess.run(["bash", "cluster/slurm.sbatch", "params/x.yaml", "--set", "federation.rounds=3"],
                   cwd=work, env=env, check=True, timeout=60)
    srun = ("srun --ntasks=8 --ntasks-per-node=4 --cpus-per-task=32 --cpu-bind=cores --gpus-per-node=4 "
            "python -m fedlib")
    site = "OMP_NUM_THREADS=16 CUDA_VISIBLE_DEVICES= NCCL_SOCKET_IFNAME=hsn FI_MR_CACHE_MONITOR=userfaultfd"
    assert _log(tmp_path) == [
        f"{srun} doctor params/x.yaml | {site}",
        f"{srun} run params/x.yaml --set federation.rounds=3 --resume auto --quiet | {site}"]


def test_slurm_frontier_like_array_task_runs_its_own_config(tmp_path):
    work, env = _job(tmp_path, SLURM_JOB_ID="78", SLURM_JOB_NUM_NODES="1", SLURM_CPUS_ON_NODE="56",
                     SLURM_ARRAY_TASK_ID="1", GPUS_PER_NODE="8", GPU_BIND="task", THREADS_PER_CORE="1")
    env["SLURM_SUBMIT_DIR"] = str(work)
    subprocess.run(["bash", "cluster/slurm.sbatch", "a.yaml", "b.yaml", "c.yaml"], cwd=work, env=env,
                   check=True, timeout=60)
    srun = ("srun --ntasks=8 --ntasks-per-node=8 --cpus-per-task=7 --cpu-bind=cores --gpus-per-task=1 "
            "--gpu-bind=closest python -m fedlib")
    assert [line.split(" | ")[0] for line in _log(tmp_path)] == [
        f"{srun} doctor b.yaml", f"{srun} run b.yaml --resume auto --quiet"]
    del env["SLURM_ARRAY_TASK_ID"]  # three configs without an array: one line saying so
    res = subprocess.run(["bash", "cluster/slurm.sbatch", "a.yaml", "b.yaml", "c.yaml"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == (
        "3 configs: submit them as an array (sbatch --array=0-2)")


def test_slurm_requeues_itself_on_usr1(tmp_path):
    """--signal=B:USR1@300 reaches the batch shell while srun runs: it requeues the job."""
    work, env = _job(tmp_path, SLURM_JOB_ID="79", SLURM_JOB_NUM_NODES="1", SLURM_CPUS_ON_NODE="8",
                     GPUS_PER_NODE="0", STUB_SLEEP="30")
    env["SLURM_SUBMIT_DIR"] = str(work)
    proc = subprocess.Popen(["bash", "cluster/slurm.sbatch"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not any(" run " in line for line in (_log(tmp_path) if (tmp_path / "argv.log").exists() else [])):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=30)
    assert "time limit near, requeueing 79" in out
    assert _log(tmp_path)[-1].startswith("scontrol requeue 79 |")
    os.kill(int((tmp_path / "argv.log.pid").read_text()), signal.SIGTERM)  # the stub srun, orphaned


@pytest.mark.parametrize("system, bind, cvd", [
    ("polaris", "--depth 8 --cpu-bind depth --env OMP_NUM_THREADS=8", "3,2,1,0"),
    ("aurora", "--cpu-bind list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100 "
               "--env OMP_NUM_THREADS=8", ""),
])
def test_pbs_pals_jobs(tmp_path, system, bind, cvd):
    work, env = _job(tmp_path, PBS_JOBID="123.server", SYSTEM=system,
                     ARGS="params/q.yaml --set federation.rounds=2")
    env["PBS_O_WORKDIR"] = str(work)
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x1\nx1\nx2\n")
    env["PBS_NODEFILE"] = str(nodefile)
    subprocess.run(["bash", "cluster/pbs.sh"], cwd=work, env=env, check=True, timeout=60)
    n = 8 if system == "polaris" else 24
    ppn = n // 2
    cmd = f"mpiexec -n {n} --ppn {ppn} {bind} python -m fedlib"
    lines = _log(tmp_path)
    assert [line.split(" | ")[0] for line in lines] == [
        f"{cmd} doctor params/q.yaml",
        f"{cmd} run params/q.yaml --set federation.rounds=2 --resume auto --quiet"]
    assert f"CUDA_VISIBLE_DEVICES={cvd} " in lines[0]
