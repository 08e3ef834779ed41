"""What produced a set of numbers: code version, library versions, machines and times. A
reviewer re-deriving a result needs to know which fedlib (commit, and whether it had local
edits), which torch/transformers/opacus/peft and which MPI library ran it, where and when.
Collected once per run on every rank (hosts are gathered), written by rank 0 into
`summary.json["provenance"]` and as a comment header of `config.yaml`.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "opacus", "peft", "mpi4py")
SOURCE = Path(__file__).resolve().parents[1]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def git() -> dict[str, Any]:
    """Commit and dirty flag of the checkout fedlib was imported from; {} when it is not one."""
    def out(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=SOURCE, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = out("rev-parse", "HEAD")
        dirty = bool(out("status", "--porcelain", "--untracked-files=no", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def mpi_library() -> str | None:
    """First line of the MPI library's version string, when MPI is loaded in this process
    (importing mpi4py.MPI would initialize MPI, so a single-process run does not)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None:
        return None
    return mpi.Get_library_version().replace("\x00", "").splitlines()[0].strip()


def software() -> dict[str, Any]:
    """Versions of the code: fedlib (+ git), Python and the libraries that compute the numbers."""
    from .. import __version__

    return {"fedlib": __version__, **git(), "python": platform.python_version(),
            **{pkg: _version(pkg) for pkg in PACKAGES}, "mpi_library": mpi_library()}


def collect(comm: Any, device: str, threads: int, started: str) -> dict[str, Any]:
    """The run's provenance; collective (every rank calls it) so that `hosts` lists them all."""
    hosts = sorted(set(comm.allgather(socket.gethostname())))
    return {**software(), "hosts": hosts, "ranks": comm.size, "threads": threads, "device": device,
            "started": started, "ended": None}


def header(prov: dict[str, Any]) -> str:
    """`# key: value` lines for the top of config.yaml."""
    return "".join(f"# {k}: {v}\n" for k, v in prov.items() if k != "ended")
