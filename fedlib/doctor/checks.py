"""The doctor's checks, each a small function of what it inspects (paths, environment, the
imported torch and MPI), so that tests can hand them a site's environment and stubbed devices.

Every check answers what a site's user-support staff ask first: which GPUs each rank sees and
whether two ranks of a node share one, which CPUs and NUMA node it may run on, which collective
library torch carries, what MPI threading it got, which network and cache settings are in force,
whether the model loads without the internet, and whether one collective goes through.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Settings that change how the collectives, the network and the GPU caches behave on the sites.
SETTING_PREFIXES = ("NCCL_", "TORCH_NCCL_", "FI_", "CCL_", "MIOPEN_", "MPICH_GPU", "MPICH_OFI",
                    "UCX_", "HSA_", "ZE_", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                    "HIP_VISIBLE_DEVICES", "OMP_NUM_THREADS", "HF_HUB_OFFLINE", "MASTER_")


def writable(path: Path) -> bool:
    """Whether a file can really be created in `path` (or the folder it would be created in):
    permission bits say yes for root on /proc or on a read-only mount, so try it."""
    p = path.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return False
    try:
        fd, name = tempfile.mkstemp(prefix=".fedlib-doctor-", dir=p)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def ranges(ids: set[int] | list[int]) -> str:
    """CPU ids as Linux writes them: {0,1,2,3,8} -> "0-3,8"."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def parse_ranges(text: str) -> set[int]:
    """Linux's cpulist format back to ids: "0-3,8" -> {0,1,2,3,8}."""
    ids: set[int] = set()
    for part in text.strip().split(","):
        if part:
            a, _, b = part.partition("-")
            ids.update(range(int(a), int(b or a) + 1))
    return ids


def affinity() -> set[int]:
    """The CPUs this process may run on (its launcher's binding)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def numa_nodes(cpus: set[int], sys_root: Path = Path("/sys")) -> str:
    """The NUMA node(s) holding `cpus` ("0", "0,1"), or "?" where /sys does not say."""
    nodes = [d for d in sorted((sys_root / "devices/system/node").glob("node[0-9]*"))
             if cpus & parse_ranges((d / "cpulist").read_text())]
    return ",".join(d.name[4:] for d in nodes) or "?"


def gpu_ids(torch: Any) -> list[str]:
    """Each visible GPU as "index name UUID PCI" (what a duplicate check compares)."""
    out = []
    for kind in ("cuda", "xpu"):
        mod = getattr(torch, kind, None)
        if mod is None or not mod.is_available():
            continue
        for i in range(mod.device_count()):
            p = mod.get_device_properties(i)
            uuid = str(getattr(p, "uuid", "") or "")
            pci = (f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
                   if hasattr(p, "pci_bus_id") else "")
            out.append(" ".join(x for x in (f"{kind}:{i}", p.name.replace(" ", "_"), uuid, pci) if x))
        break
    return out


def gpu_numa(gpu_id: str, sys_root: Path = Path("/sys")) -> str:
    """The NUMA node of the GPU whose id ends in its PCI address ("0000:c1:00.0"), from
    /sys/bus/pci/devices/<address>/numa_node; "?" where /sys does not say (-1: no affinity)."""
    pci = gpu_id.split()[-1].lower() if gpu_id else ""
    f = sys_root / "bus/pci/devices" / pci / "numa_node"
    try:
        node = f.read_text().strip() if pci.count(":") == 2 else ""
    except OSError:
        return "?"
    return node if node.isdigit() else "?"


def network(torch: Any, device: Any) -> str:
    """How this rank's collective library reaches other nodes (fedlib.hpc.mpilib): NCCL/RCCL through
    the libfabric plugin or over sockets, oneCCL's transport; "-" on a CPU-only torch."""
    from ..hpc import mpilib

    if device.type == "xpu":
        return mpilib.collective_network("ccl")
    if getattr(torch.version, "hip", None):
        return mpilib.collective_network("rccl")
    if torch.version.cuda:
        return mpilib.collective_network("nccl")
    return "-"


def shared_gpus(rows: list[Any], backend: str) -> list[str]:
    """Ranks of one host bound to the same physical GPU (by UUID/PCI): NCCL refuses that
    ("Duplicate GPU detected"); MPI tolerates it at a cost."""
    users: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in rows:
        if r.gpu_id:
            users[(r.host, r.gpu_id)].append(r.mpi_rank)
    out = []
    for (host, gid), ranks in users.items():
        if len(ranks) > 1:
            why = ("NCCL refuses two ranks on one GPU; bind one rank per GPU or use "
                   "federation.backend: mpi" if backend == "torch" else
                   "allowed with the MPI backend, but they share its memory and time")
            out.append(f"ranks {','.join(map(str, ranks))} on {host} share GPU {gid}: {why}")
    return out


def collectives(torch: Any) -> dict[str, str]:
    """The collective libraries torch carries: NCCL/RCCL version and the backends present."""
    import torch.distributed as dist

    names = [b for b in ("gloo", "nccl", "mpi", "ucc", "xccl", "ccl")
             if dist.is_available() and _available(dist, b)]
    lib = "RCCL" if getattr(torch.version, "hip", None) else "NCCL"
    try:
        v = torch.cuda.nccl.version()
        ver = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
    except Exception:  # noqa: BLE001 - a CPU build has none
        ver = "none in this torch build"
    return {f"torch {lib}": ver, "torch.distributed backends": ", ".join(names) or "none"}


def _available(dist: Any, name: str) -> bool:
    try:
        return bool(dist.is_backend_available(name))
    except Exception:  # noqa: BLE001 - older torch: no such query
        return bool(getattr(dist, f"is_{name}_available", lambda: False)())


def thread_level(mpi: Any) -> str:
    """MPI's granted thread level (the overlap thread needs MULTIPLE, else stays off)."""
    names = {getattr(mpi, n): n for n in ("THREAD_SINGLE", "THREAD_FUNNELED", "THREAD_SERIALIZED",
                                          "THREAD_MULTIPLE")}
    return names.get(mpi.Query_thread(), str(mpi.Query_thread()))


def settings(env: Mapping[str, str] | None = None) -> list[str]:
    """`NAME=value` for every setting in SETTING_PREFIXES, sorted."""
    env = os.environ if env is None else env
    return [f"{k}={v}" for k, v in sorted(env.items()) if k.startswith(SETTING_PREFIXES)]


def model_offline(name: str) -> tuple[bool, str]:
    """Whether `model.name` loads with no network (compute nodes are often offline)."""
    from ..learn import models

    try:
        spec = models.locate(name)
    except Exception as e:  # noqa: BLE001 - e.g. the MiniLM package missing
        return False, f"{name}: cannot resolve ({type(e).__name__}: {e})"
    if spec.kind == "preset" or Path(spec.source).is_dir():
        return True, f"{name}: local ({spec.source})"
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(spec.source, "config.json")
    if isinstance(hit, str):
        return True, f"{name}: in the Hugging Face cache ({Path(hit).parent})"
    return False, (f"{name}: not in the Hugging Face cache (HF_HOME); download it on a login node "
                   f"(python -c \"import transformers as t; t.AutoModel.from_pretrained('{spec.source}')\")")


def smoke(comm: Any, device: Any) -> str:
    """One allreduce of ones on `device` through `comm`: "ok (sum N)" when every rank took part."""
    import torch

    buf = torch.ones(4, device=device)
    comm.allreduce(buf)
    got = buf.cpu().tolist()
    return f"ok (sum {got[0]:g} = {comm.size} ranks)" if got == [float(comm.size)] * 4 else \
        f"WRONG: allreduce of ones gave {got} on {comm.size} ranks"
