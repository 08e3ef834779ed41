"""`federation.backend: torch`: the Comm interface on torch.distributed, for sites whose fastest
collectives are NCCL (NVIDIA), RCCL (AMD, also spelled `nccl` in torch) or oneCCL (Intel).

The collective library follows the device: gloo for CPU tensors, NCCL for CUDA/ROCm, xccl
(torch >= 2.8) or ccl (oneccl_bindings_for_pytorch) for XPU. A tensor not on the library's
device is staged through a copy, timed in `copy_s` (with NCCL and device buffers: none).

The process group is built from the launcher that started the ranks: rank and world size
from MPI (mpi4py) — or, without MPI, Slurm's / torchrun's variables — and the rendezvous
address from MASTER_ADDR/MASTER_PORT if set, else rank 0's address on the interface named by
FEDLIB_IFNAME or NCCL_SOCKET_IFNAME (hsn0 on Slingshot: the high-speed network, not the
management Ethernet that the host name resolves to) or its host name, where rank 0 opens the
TCP store on a port the OS picks and broadcasts it with MPI: the store holds the port from the
moment it is chosen (a port probed free and closed before the store bound it could be taken in
between, a race that grows with the job). Buffers travel in chunks < 2 GiB, like MPIComm's.

On NCCL the group is bound to the rank's GPU (`device_id`: one communicator, built eagerly,
instead of one per pair of ranks at their first message), and NCCL refuses two ranks on one GPU
("Duplicate GPU detected"), so two ranks of a host bound to the same physical GPU (its UUID or
PCI address, gathered over MPI) are a config error here; how many GPUs one rank sees says
nothing (under --gpus-per-task=1 each sees one, a different one). The MPI backend may share.
`federation.timeout_s` bounds every collective: the other ranks of a node wait in one while its
first rank builds the tokenized-data cache.
"""

from __future__ import annotations

import atexit
import fcntl
import inspect
import os
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  (before the group exists: see TorchComm.close)

from ..config.errors import ConfigError
from ..hpc import vendor
from .staging import _DEFAULT_CHUNK, IDLE_POLL_S, Staging, chunks

_SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's IPv4 address
_HAS_DEVICE_ID = "device_id" in inspect.signature(dist.init_process_group).parameters  # torch >= 2.3


def _backend(device: torch.device) -> str:
    if device.type == "cuda":
        return "nccl"
    if device.type == "xpu":
        return "xccl" if dist.is_backend_available("xccl") else "ccl"
    return "gloo"


def _world() -> tuple[int, int, Any]:
    """(rank, size, mpi4py COMM_WORLD or None) from the launcher."""
    try:
        from mpi4py import MPI

        w = MPI.COMM_WORLD
        if w.Get_size() > 1 or "SLURM_PROCID" not in os.environ:
            return w.Get_rank(), w.Get_size(), w
    except ImportError:
        pass
    for rank, size in (("SLURM_PROCID", "SLURM_NTASKS"), ("RANK", "WORLD_SIZE")):
        if rank in os.environ:
            return int(os.environ[rank]), int(os.environ[size]), None
    raise RuntimeError("federation.backend=torch: cannot tell this process's rank (no MPI world, "
                       "no SLURM_PROCID, no RANK)")


def interface_address(name: str) -> str:
    """The IPv4 address of network interface `name` (e.g. hsn0), via the SIOCGIFADDR ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            req = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as e:
            raise ValueError(f"no IPv4 address on network interface {name!r}: {e.strerror}") from None
    return socket.inet_ntoa(req[20:24])


def rendezvous_host(env: Mapping[str, str] | None = None) -> str:
    """Rank 0's address for the others to reach it: on the interface FEDLIB_IFNAME names, else
    on the first interface NCCL_SOCKET_IFNAME selects (as NCCL reads it: `hsn` is a prefix that
    matches hsn0, `=hsn0` an exact name, `^...` an exclusion list that names none), else the
    host name."""
    env = os.environ if env is None else env
    for var in ("FEDLIB_IFNAME", "NCCL_SOCKET_IFNAME"):
        spec = env.get(var, "").strip()
        if not spec or spec.startswith("^"):
            continue
        exact = var == "FEDLIB_IFNAME" or spec.startswith("=")
        wanted = [w.strip() for w in spec.lstrip("=").split(",") if w.strip()]
        names = [n for _, n in socket.if_nameindex()]
        found = [n for w in wanted for n in names if (n == w if exact else n.startswith(w))]
        for name in found:
            try:
                return interface_address(name)
            except ValueError:
                continue
        raise ValueError(f"{var}={spec}: no network interface here with an IPv4 address matches "
                         f"(interfaces: {', '.join(names)})")
    return socket.gethostname()


def _rendezvous(rank: int, mpi: Any, size: int = 1, timeout: timedelta = timedelta(minutes=30)
                ) -> dict[str, Any]:
    """init_process_group's rendezvous: MASTER_ADDR/MASTER_PORT when both are set, else a TCP
    store that rank 0 opens on a port the OS picks (port 0), its address broadcast with MPI."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if addr is not None and port is not None:
        return {"init_method": f"tcp://{addr}:{port}"}
    if mpi is None:
        raise RuntimeError("federation.backend=torch without MPI needs MASTER_ADDR and MASTER_PORT")
    if rank == 0:
        host = rendezvous_host()
        store = dist.TCPStore(host, 0, size, True, timeout=timeout, wait_for_workers=False)
        mpi.bcast((host, store.port), root=0)
        return {"store": store}
    host, port = mpi.bcast(None, root=0)
    return {"store": dist.TCPStore(host, int(port), size, False, timeout=timeout)}


def gpu_identity(device: torch.device) -> str:
    """The physical GPU behind `device`, the same on every rank that sees it (masks renumber
    devices per rank, identities do not): its UUID, else its PCI address."""
    p = torch.cuda.get_device_properties(device)
    uuid = str(getattr(p, "uuid", "") or "")
    if uuid:
        return uuid
    if hasattr(p, "pci_bus_id"):
        return f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
    return f"{device} of {os.environ.get('CUDA_VISIBLE_DEVICES', 'all')}"


def check_gpu_ranks(backend: str, gpus: list[tuple[str, str]]) -> None:
    """NCCL/RCCL: one rank per GPU. `gpus[r]` is (host, GPU identity) of rank r: ranks of a host
    on one physical GPU are a config error naming them, before NCCL aborts."""
    if backend != "nccl":
        return
    users: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rank, key in enumerate(gpus):
        users[key].append(rank)
    for (host, gid), ranks in users.items():
        if len(ranks) > 1:
            raise ConfigError(
                f"federation.backend: torch runs NCCL, one rank per GPU, but ranks "
                f"{', '.join(map(str, ranks))} on {host} share GPU {gid}; start one rank per GPU "
                "(--gpus-per-task=1, or as many ranks per node as GPUs) or set "
                "federation.backend: mpi (ranks may share a GPU)")


class TorchComm:
    def __init__(self, device: torch.device | None = None, chunk_bytes: int = _DEFAULT_CHUNK,
                 timeout_s: float = 1800.0) -> None:
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.rank, self.size, self._mpi = _world()
        self.backend = _backend(self.device)
        vendor.prepare_backend(self.backend)  # ccl exists once oneCCL's bindings are imported
        extra: dict[str, Any] = {}
        if self.backend == "nccl":
            torch.cuda.set_device(self.device)
            mine = (socket.gethostname(), gpu_identity(self.device))
            check_gpu_ranks(self.backend, self._mpi.allgather(mine) if self._mpi is not None else [mine])
            if _HAS_DEVICE_ID:
                index = self.device.index if self.device.index is not None else torch.cuda.current_device()
                extra["device_id"] = torch.device("cuda", index)
        if not dist.is_initialized():
            timeout = timedelta(seconds=timeout_s)
            dist.init_process_group(self.backend, rank=self.rank, world_size=self.size, timeout=timeout,
                                    **_rendezvous(self.rank, self._mpi, self.size, timeout), **extra)
            atexit.register(self.close)
        self.comm_device = torch.device("cpu") if self.backend == "gloo" else self.device
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        self._stage = Staging()
        # objects travel on the comm device (NCCL pickles into CUDA tensors)
        self._obj_device = None if self.backend == "gloo" else self.device
        self.serialized_threads = True  # one thread at a time calls the group (the star's overlap)

    @property
    def copy_s(self) -> float:
        return self._stage.copy_s

    def _nbytes(self, buf: torch.Tensor) -> int:
        return buf.numel() * buf.element_size()

    def allreduce(self, buf: torch.Tensor) -> None:
        staged = self._stage.there(buf, self.comm_device)
        for part in chunks(staged, self.chunk_bytes):
            dist.all_reduce(part, op=dist.ReduceOp.SUM)
        self._stage.back(buf, staged)
        self.bytes_sent += self._nbytes(buf)

    def broadcast(self, buf: torch.Tensor, root: int = 0) -> None:
        staged = self._stage.there(buf, self.comm_device, fill=self.rank == root)
        for part in chunks(staged, self.chunk_bytes):
            dist.broadcast(part, src=root)
        if self.rank == root:
            self.bytes_sent += self._nbytes(buf) * (self.size - 1)
        else:
            self._stage.back(buf, staged)

    def send(self, buf: torch.Tensor, dest: int, tag: int = 0) -> None:
        staged = self._stage.there(buf, self.comm_device)
        for part in chunks(staged, self.chunk_bytes):
            dist.send(part, dst=dest, tag=tag)
        self.bytes_sent += self._nbytes(buf)

    def recv(self, buf: torch.Tensor, source: int, tag: int = 0) -> None:
        staged = self._stage.there(buf, self.comm_device, fill=False)
        for part in chunks(staged, self.chunk_bytes):
            dist.recv(part, src=source, tag=tag)
        self._stage.back(buf, staged)

    def recv_any(self, buf: torch.Tensor, tag: int = 0) -> int:
        """Receive from whichever rank sends first (src=None); later chunks from that rank."""
        staged = self._stage.there(buf, self.comm_device, fill=False)
        first, *rest = chunks(staged, self.chunk_bytes)
        source = int(dist.recv(first, src=None, tag=tag))
        for part in rest:
            dist.recv(part, src=source, tag=tag)
        self._stage.back(buf, staged)
        return source

    def allgather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=root, device=self._obj_device)
        return box[0]

    def barrier(self, idle: bool = False) -> None:
        if idle and self.backend != "nccl":  # gloo: poll, so a peer's cache build gets this core
            work = dist.barrier(async_op=True)
            while work is not None and not work.is_completed():
                time.sleep(IDLE_POLL_S)
            return
        dist.barrier(device_ids=[self.device.index or 0] if self.backend == "nccl" else None)

    def abort(self, code: int = 1) -> None:
        """End every rank: through MPI when it launched us, else by exiting (the launcher ends the rest)."""
        if self._mpi is not None:
            self._mpi.Abort(code)
        os._exit(code)

    def close(self) -> None:
        """Tear the process group down while the interpreter is alive (idempotent; also at exit).

        Left to interpreter finalization, gloo's worker threads free the tensors of their last
        work after Python is gone and abort the rank (SIGABRT, "terminate called without an
        active exception"). Destroying the group frees it only if nothing else holds it: that
        is why this module imports torch.distributed.nn.functional first, whose functions
        otherwise capture the live group as a default argument when a library imports them."""
        if dist.is_initialized():
            dist.destroy_process_group()
