"""fedlib.lab.engines on a cluster: inside a Slurm allocation the notebooks' `mpi` engines are
started with `srun` (Slurm sites provide no `mpiexec`), and engines kept for JupyterLab stop
once they sit idle instead of billing the whole allocation."""

import sys
import types
from pathlib import Path

import pytest

from fedlib.lab import engines


def test_engines_start_with_srun_inside_a_slurm_allocation(monkeypatch):
    found = {"srun": "/usr/bin/srun"}
    assert engines.launch_command({"SLURM_JOB_ID": "77"}, found.get) == ["srun"]
    venv = str(Path(sys.executable).with_name("mpiexec"))
    assert engines.launch_command({}, found.get) == [venv]  # a laptop: this venv's Open MPI
    assert engines.launch_command({"SLURM_JOB_ID": "77"}, {}.get) == [venv]  # no srun here
    started = {}

    class Cluster:  # what Pool asks ipyparallel for (no engines start here)
        def __init__(self, **kw):
            self.config = types.SimpleNamespace(MPILauncher=types.SimpleNamespace())
            started["cluster"] = self

        def start_and_connect_sync(self):
            raise RuntimeError("stop here")

    monkeypatch.setitem(sys.modules, "ipyparallel", types.SimpleNamespace(Cluster=Cluster))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(engines.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(engines.atexit, "register", lambda fn: None)
    monkeypatch.setattr(engines, "_exit_on_sigterm", lambda: None)
    with pytest.raises(RuntimeError, match="stop here"):
        engines.Pool("mpi", n=2)
    assert started["cluster"].config.MPILauncher.mpi_cmd == ["srun"]


def test_kept_engines_stop_after_the_idle_minutes_and_not_before():
    """A fake clock: work until minute 12 (the completed count moves), then nothing; with a
    10-minute limit the watch ends at minute 22, having watched 22 minutes."""
    now = [0.0]
    done = {0: 0}

    def status():
        if now[0] <= 12 * 60:
            done[0] = int(now[0] // 60)  # one task a minute
        return {0: {"queue": 0, "completed": done[0], "tasks": 0}, "unassigned": 0}

    def sleep(s):
        now[0] += s

    watched = engines.idle(status, minutes=10, poll_s=60, clock=lambda: now[0], sleep=sleep)
    assert watched == 22 * 60
