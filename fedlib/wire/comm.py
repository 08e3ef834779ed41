"""The one communication interface the algorithms see: rank, size and a few collectives on
flat torch tensors, wherever they live. `LocalComm` is one process; `MPIComm` wraps mpi4py;
`TorchComm` (fedlib.wire.torch_comm) wraps torch.distributed. The learning core never imports
mpi4py or torch.distributed; besides these two backends only the diagnostics (fedlib.doctor.report,
fedlib.record.provenance) ask them what they see.

Every call counts the bytes it hands to the network (summed over ranks by the caller), so the
per-round instrumentation does not depend on which implementation runs; and the seconds spent
staging device buffers through host memory (`copy_s`), which the round reports apart from
`comm`. A backend that can read device memory (CUDA-aware MPI, NCCL) copies nothing.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # importing this module stays light: no torch until a buffer arrives
    import torch

from ..hpc import launcher
from .staging import _DEFAULT_CHUNK, IDLE_POLL_S, Staging, chunks, synchronize

__all__ = ["LAUNCH_ENV", "Comm", "LocalComm", "MPIComm", "Staging", "chunks", "make_comm", "synchronize"]

# Environment for launching Open MPI from fedlib (tests, benchmarks, notebook engines): allow
# root (containers, CI), more ranks than cores, and keep Hugging Face offline.
LAUNCH_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}

class Comm(Protocol):
    rank: int
    size: int
    bytes_sent: int
    copy_s: float  # seconds staging device buffers through the host

    def allreduce(self, buf: torch.Tensor) -> None: ...
    def broadcast(self, buf: torch.Tensor, root: int = 0) -> None: ...
    def send(self, buf: torch.Tensor, dest: int, tag: int = 0) -> None: ...
    def recv(self, buf: torch.Tensor, source: int, tag: int = 0) -> None: ...
    def recv_any(self, buf: torch.Tensor, tag: int = 0) -> int: ...
    def allgather(self, obj: Any) -> list[Any]: ...
    def bcast_obj(self, obj: Any, root: int = 0) -> Any: ...
    def barrier(self, idle: bool = False) -> None:
        """Every rank reaches it. `idle`: this rank has nothing to do meanwhile (a peer builds a
        cache): wait without spinning a core, so the builder may use it (`IDLE_POLL_S`)."""
        ...

    def abort(self, code: int = 1) -> None: ...


def mpi_gpu_support() -> tuple[bool, str]:
    """Whether MPI may be handed GPU memory, and how that was decided (doctor prints both).

    FEDLIB_CUDA_AWARE_MPI=1/0 decides. Otherwise ask the library mpi4py loaded — through
    mpi4py's own extension module: Python loads it RTLD_LOCAL, so libmpi's symbols are not in
    the global namespace and `CDLL(None)` never finds them, whereas dlsym on the module's handle
    searches its dependencies. `MPIX_Query_cuda_support` (Open MPI, MPICH >= 4) or, on ROCm,
    `MPIX_Query_rocm_support` (Open MPI 5). Cray MPICH exports neither: it is GPU-aware when
    MPICH_GPU_SUPPORT_ENABLED=1 and its GTL library (libmpi_gtl_cuda / _hsa) is loaded."""
    env = os.environ.get("FEDLIB_CUDA_AWARE_MPI")
    if env is not None:
        return env == "1", f"FEDLIB_CUDA_AWARE_MPI={env}"
    try:
        from mpi4py import MPI
    except ImportError:
        return False, "no mpi4py"
    path = getattr(MPI, "__file__", None)
    if path is None:  # an mpi4py.MPI that is not the compiled module (a stand-in)
        return False, "mpi4py.MPI has no library file to ask"
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return False, f"cannot open {path}: {e}"
    import torch

    names = ("MPIX_Query_rocm_support",) if torch.version.hip else ()
    for name in (*names, "MPIX_Query_cuda_support"):
        fn = getattr(lib, name, None)
        if fn is not None:
            ok = bool(fn())
            return ok, f"{name}() = {int(ok)}"
    if os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1":
        gtl = _loaded("libmpi_gtl_")
        return gtl is not None, (f"MPICH_GPU_SUPPORT_ENABLED=1, {gtl} loaded" if gtl else
                                 "MPICH_GPU_SUPPORT_ENABLED=1 but no GTL library loaded "
                                 "(link with craype-accel-* loaded)")
    return False, "the MPI library exports no MPIX_Query_*_support (Cray MPICH: MPICH_GPU_SUPPORT_ENABLED=1)"


def _loaded(prefix: str) -> str | None:
    """The name of a shared library with `prefix` mapped into this process, if any."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                name = os.path.basename(line.split()[-1]) if "/" in line else ""
                if name.startswith(prefix):
                    return name
    except OSError:
        return None
    return None


def cuda_aware_mpi() -> bool:
    """Whether MPI may be handed CUDA (or ROCm) memory: see `mpi_gpu_support`."""
    return mpi_gpu_support()[0]


class LocalComm:
    """A world of one: every collective is the identity."""

    rank = 0
    size = 1

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.copy_s = 0.0

    def allreduce(self, buf: torch.Tensor) -> None:
        return None

    def broadcast(self, buf: torch.Tensor, root: int = 0) -> None:
        return None

    def send(self, buf: torch.Tensor, dest: int, tag: int = 0) -> None:
        raise RuntimeError("LocalComm has no peers to send to")

    def recv(self, buf: torch.Tensor, source: int, tag: int = 0) -> None:
        raise RuntimeError("LocalComm has no peers to receive from")

    def recv_any(self, buf: torch.Tensor, tag: int = 0) -> int:
        raise RuntimeError("LocalComm has no peers to receive from")

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return obj

    def barrier(self, idle: bool = False) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        return None


class MPIComm:
    """mpi4py on COMM_WORLD (or a given communicator); buffers travel in chunks < 2 GiB. CPU
    tensors go as numpy views (no copy); device tensors go as they are when MPI is CUDA-aware,
    else through a host copy (timed in `copy_s`)."""

    def __init__(self, comm: Any = None, chunk_bytes: int = _DEFAULT_CHUNK) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        self._stage = Staging()
        self.cuda_aware = cuda_aware_mpi()
        # a background thread may make every MPI call while this one computes (federation.overlap)
        self.serialized_threads = MPI.Query_thread() >= MPI.THREAD_SERIALIZED

    @property
    def copy_s(self) -> float:
        return self._stage.copy_s

    def _staged(self, buf: torch.Tensor, fill: bool = True) -> torch.Tensor:
        """The tensor MPI reads/writes: `buf` itself, or its host copy."""
        if buf.device.type == "cuda" and self.cuda_aware:
            synchronize(buf.device)  # MPI does not see torch's stream
            return buf
        return self._stage.there(buf, "cpu", fill)

    def _parts(self, buf: torch.Tensor) -> list[Any]:
        return [p.cpu().numpy() if p.device.type == "cpu" else p for p in chunks(buf, self.chunk_bytes)]

    def allreduce(self, buf: torch.Tensor) -> None:
        staged = self._staged(buf)
        for part in self._parts(staged):
            self._comm.Allreduce(self._mpi.IN_PLACE, part, op=self._mpi.SUM)
        self._stage.back(buf, staged)
        self.bytes_sent += buf.numel() * buf.element_size()

    def broadcast(self, buf: torch.Tensor, root: int = 0) -> None:
        staged = self._staged(buf, fill=self.rank == root)
        for part in self._parts(staged):
            self._comm.Bcast(part, root=root)
        if self.rank == root:
            self.bytes_sent += buf.numel() * buf.element_size() * (self.size - 1)
        else:
            self._stage.back(buf, staged)

    def send(self, buf: torch.Tensor, dest: int, tag: int = 0) -> None:
        staged = self._staged(buf)
        for part in self._parts(staged):
            self._comm.Send(part, dest=dest, tag=tag)
        self.bytes_sent += buf.numel() * buf.element_size()

    def recv(self, buf: torch.Tensor, source: int, tag: int = 0) -> None:
        staged = self._staged(buf, fill=False)
        for part in self._parts(staged):
            self._comm.Recv(part, source=source, tag=tag)
        self._stage.back(buf, staged)

    def recv_any(self, buf: torch.Tensor, tag: int = 0) -> int:
        """Receive `buf` from whichever rank sends first (MPI.ANY_SOURCE); that rank. Later
        chunks come from the same rank (MPI keeps one sender's messages in order)."""
        staged = self._staged(buf, fill=False)
        first, *rest = self._parts(staged)
        status = self._mpi.Status()
        self._comm.Recv(first, source=self._mpi.ANY_SOURCE, tag=tag, status=status)
        source = status.Get_source()
        for part in rest:
            self._comm.Recv(part, source=source, tag=tag)
        self._stage.back(buf, staged)
        return int(source)

    def allgather(self, obj: Any) -> list[Any]:
        return self._comm.allgather(obj)

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self._comm.bcast(obj, root=root)

    def barrier(self, idle: bool = False) -> None:
        if not idle:
            self._comm.Barrier()  # MPI spins while it waits: the lowest latency
            return
        req = self._comm.Ibarrier()
        while not req.Test():
            time.sleep(IDLE_POLL_S)

    def abort(self, code: int = 1) -> None:
        """End every rank: one failing rank must not leave the others blocked in a collective."""
        self._comm.Abort(code)


def under_mpi() -> bool:
    """True when started by a parallel launcher (mpiexec, srun, PALS), without importing MPI."""
    return launcher.launched()


def make_comm(kind: str = "auto", chunk_bytes: int = _DEFAULT_CHUNK, device: Any = None,
              timeout_s: float = 1800.0) -> Comm:
    """`auto` picks MPI when a launcher started this process, else the local world of one;
    `torch` likewise picks torch.distributed on the launcher's ranks (federation.backend), its
    collective library chosen by `device` (gloo on CPU, NCCL on CUDA), every collective bounded
    by `timeout_s` (federation.timeout_s; MPI has no timeout); `mpi` is always MPI.

    A world whose size differs from the launcher's stops here (`launcher.WorldMismatch`): N
    one-rank worlds would otherwise each run the whole job into the same folder."""
    if kind == "local" or (kind in ("auto", "torch") and not under_mpi()):
        return LocalComm()
    if kind != "torch":
        comm: Comm = MPIComm(chunk_bytes=chunk_bytes)
    else:
        from .torch_comm import TorchComm  # here: torch.distributed loads only for this backend
        comm = TorchComm(device=device, chunk_bytes=chunk_bytes, timeout_s=timeout_s)
    launcher.check_world(comm.size)
    return comm
