"""`federation.backend: torch`: the Comm interface on torch.distributed, for sites whose fastest
collectives are NCCL (NVIDIA), RCCL (AMD, also spelled `nccl` in torch) or oneCCL (Intel).

The collective library follows the device: gloo for CPU tensors, NCCL for CUDA/ROCm, xccl
(torch >= 2.8) or ccl (oneccl_bindings_for_pytorch) for XPU. A tensor not on the library's
device is staged through a copy, timed in `copy_s` (with NCCL and device buffers: none).

The process group is built from the launcher that started the ranks: rank and world size
from MPI (mpi4py) — or, without MPI, Slurm's / torchrun's variables — and the rendezvous
address from MASTER_ADDR/MASTER_PORT if set, else rank 0's host and a free port on it,
broadcast with MPI. Buffers travel in chunks < 2 GiB, like MPIComm's.
"""

from __future__ import annotations

import atexit
import os
import socket
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  (before the group exists: see TorchComm.close)

from .comm import _DEFAULT_CHUNK, Staging, chunks


def _backend(device: torch.device) -> str:
    if device.type == "cuda":
        return "nccl"
    if device.type == "xpu":
        return "xccl" if dist.is_backend_available("xccl") else "ccl"
    return "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


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


def _rendezvous(rank: int, mpi: Any) -> str:
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if addr is None or port is None:
        if mpi is None:
            raise RuntimeError("federation.backend=torch without MPI needs MASTER_ADDR and MASTER_PORT")
        mine = (socket.gethostname(), _free_port()) if rank == 0 else None
        addr, port = mpi.bcast(mine, root=0)
    return f"tcp://{addr}:{port}"


class TorchComm:
    def __init__(self, device: torch.device | None = None, chunk_bytes: int = _DEFAULT_CHUNK,
                 timeout_s: float = 1800.0) -> None:
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.rank, self.size, self._mpi = _world()
        self.backend = _backend(self.device)
        if self.backend == "nccl":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(self.backend, init_method=_rendezvous(self.rank, self._mpi),
                                    rank=self.rank, world_size=self.size,
                                    timeout=timedelta(seconds=timeout_s))
            atexit.register(self.close)
        self.wire = torch.device("cpu") if self.backend == "gloo" else self.device
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        self._stage = Staging()
        # objects travel on the wire device (NCCL pickles into CUDA tensors)
        self._obj_device = None if self.backend == "gloo" else self.device
        self.serialized_threads = True  # one thread at a time calls the group (the star's overlap)

    @property
    def copy_s(self) -> float:
        return self._stage.copy_s

    def _nbytes(self, buf: torch.Tensor) -> int:
        return buf.numel() * buf.element_size()

    def allreduce(self, buf: torch.Tensor) -> None:
        wire = self._stage.there(buf, self.wire)
        for part in chunks(wire, self.chunk_bytes):
            dist.all_reduce(part, op=dist.ReduceOp.SUM)
        self._stage.back(buf, wire)
        self.bytes_sent += self._nbytes(buf)

    def broadcast(self, buf: torch.Tensor, root: int = 0) -> None:
        wire = self._stage.there(buf, self.wire, fill=self.rank == root)
        for part in chunks(wire, self.chunk_bytes):
            dist.broadcast(part, src=root)
        if self.rank == root:
            self.bytes_sent += self._nbytes(buf) * (self.size - 1)
        else:
            self._stage.back(buf, wire)

    def send(self, buf: torch.Tensor, dest: int, tag: int = 0) -> None:
        wire = self._stage.there(buf, self.wire)
        for part in chunks(wire, self.chunk_bytes):
            dist.send(part, dst=dest, tag=tag)
        self.bytes_sent += self._nbytes(buf)

    def recv(self, buf: torch.Tensor, source: int, tag: int = 0) -> None:
        wire = self._stage.there(buf, self.wire, fill=False)
        for part in chunks(wire, self.chunk_bytes):
            dist.recv(part, src=source, tag=tag)
        self._stage.back(buf, wire)

    def allgather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=root, device=self._obj_device)
        return box[0]

    def barrier(self) -> None:
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
