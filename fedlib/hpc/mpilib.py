"""What MPI and collective libraries this process will load, read before MPI starts.

Cray MPICH with `MPICH_GPU_SUPPORT_ENABLED=1` but without its GTL library (libmpi_gtl_hsa on
ROCm, libmpi_gtl_cuda on CUDA) linked "will print an error message and exit immediately" (OLCF
Frontier user guide) — inside MPI_Init, which `from mpi4py import MPI` calls, so before fedlib
can say anything. `gtl_problem` answers from mpi4py's extension module on disk (its shared
libraries, as `ldd` lists them) without importing it; `cluster/env.sh` asks `python -m
fedlib.hpc.mpilib gtl` before it turns GPU support on, and `fedlib doctor` / `fedlib run` stop with
one line before the first MPI call.

`collective_network` says whether NCCL/RCCL will reach the high-speed network through a
libfabric plugin (aws-ofi-nccl / aws-ofi-rccl: Frontier, Perlmutter, Polaris) or fall back to
TCP sockets, and what oneCCL's transport is (Aurora). Stdlib only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

GPU_SUPPORT = "MPICH_GPU_SUPPORT_ENABLED"


def extension() -> Path | None:
    """mpi4py's compiled MPI module (found, not imported: importing it starts MPI)."""
    try:
        spec = importlib.util.find_spec("mpi4py.MPI")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def linked(path: Path) -> list[str]:
    """The shared libraries `path` loads, as `ldd` resolves them ("name => /path"); [] if unknown."""
    try:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gtl(libs: list[str]) -> list[str]:
    """The GTL libraries among `libs` (libmpi_gtl_hsa, libmpi_gtl_cuda, ...)."""
    return [m.group(0) for line in libs if (m := re.search(r"libmpi_gtl_\w+", line))]


def cray_mpich(libs: list[str]) -> bool:
    return any("libmpi_cray" in line or "/cray/pe/" in line for line in libs)


def gtl_problem(env: Mapping[str, str] | None = None, libs: list[str] | None = None) -> str | None:
    """One line when Cray MPICH would exit in MPI_Init for want of GTL, else None."""
    env = os.environ if env is None else env
    if env.get(GPU_SUPPORT, "0").strip() != "1":
        return None
    if libs is None:
        ext = extension()
        libs = linked(ext) if ext is not None else []
    if not cray_mpich(libs) or gtl(libs):
        return None
    return (f"{GPU_SUPPORT}=1 but mpi4py's MPI (Cray MPICH) does not link its GTL library "
            "(libmpi_gtl_hsa / libmpi_gtl_cuda): Cray MPICH would exit at MPI_Init. Unset it "
            "(cluster/env.sh sets it only with GTL), or rebuild mpi4py with the GPU target "
            "module loaded (Frontier: craype-accel-amd-gfx90a; make clean; make install SITE=1)")


def _plugin_in(dirs: list[str], names: list[str]) -> str | None:
    for d in dirs:
        for n in names:
            if d and Path(d, n).is_file():
                return str(Path(d, n))
    return None


def collective_network(library: str, env: Mapping[str, str] | None = None) -> str:
    """How `library` (nccl, rccl, ccl) will reach other nodes: "plugin <path>" (the high-speed
    network through libfabric), "sockets (<why>)", or oneCCL's transport."""
    env = os.environ if env is None else env
    if library == "ccl":
        atl = env.get("CCL_ATL_TRANSPORT", "ofi (default)")
        provider = env.get("FI_PROVIDER", "")
        if provider in ("tcp", "sockets") or atl.startswith("sockets"):
            return f"sockets (CCL_ATL_TRANSPORT={atl}, FI_PROVIDER={provider})"
        return f"oneCCL over {atl}" + (f" (FI_PROVIDER={provider})" if provider else "")
    if env.get("NCCL_NET", "").lower() == "socket":
        return "sockets (NCCL_NET=Socket)"
    dirs = env.get("LD_LIBRARY_PATH", "").split(":")
    wanted = env.get("NCCL_NET_PLUGIN", "").strip()
    if wanted:
        if "/" in wanted:
            return f"plugin {wanted}" if Path(wanted).is_file() else \
                f"sockets (NCCL_NET_PLUGIN={wanted}: no such file)"
        found = _plugin_in(dirs, [f"libnccl-net-{wanted}.so", f"lib{wanted}.so", wanted])
        return f"plugin {found}" if found else \
            f"sockets (NCCL_NET_PLUGIN={wanted} not found on LD_LIBRARY_PATH)"
    names = ["librccl-net.so", "libnccl-net.so"] if library == "rccl" else ["libnccl-net.so"]
    found = _plugin_in(dirs, names)
    if found:
        return f"plugin {found}"
    return (f"sockets (no NCCL_NET_PLUGIN and no {' / '.join(names)} on LD_LIBRARY_PATH: load the "
            "site's plugin module, see cluster/env.sh)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["gtl"]:  # cluster/env.sh: does mpi4py's MPI link GTL?
        ext = extension()
        print("yes" if ext is not None and gtl(linked(ext)) else "no")
        return 0
    print("usage: python -m fedlib.hpc.mpilib gtl", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
