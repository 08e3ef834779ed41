"""The one communication interface the algorithms see: rank, size and a few collectives on
flat numpy buffers. `LocalComm` is one process; `MPIComm` wraps mpi4py. Nothing else in
fedlib imports mpi4py.

Every call counts the bytes it hands to the network (summed over ranks by the caller), so the
per-round instrumentation does not depend on which implementation runs.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from . import launcher

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

_DEFAULT_CHUNK = 1 << 30  # bytes; MPI counts are int32, keep every message below 2 GiB


class Comm(Protocol):
    rank: int
    size: int
    bytes_sent: int

    def allreduce(self, buf: np.ndarray) -> None: ...
    def broadcast(self, buf: np.ndarray, root: int = 0) -> None: ...
    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None: ...
    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None: ...
    def allgather(self, obj: Any) -> list[Any]: ...
    def bcast_obj(self, obj: Any, root: int = 0) -> Any: ...
    def barrier(self) -> None: ...
    def abort(self, code: int = 1) -> None: ...


def _chunks(buf: np.ndarray, chunk_bytes: int) -> list[np.ndarray]:
    flat = buf.reshape(-1)
    step = max(1, chunk_bytes // flat.itemsize)
    return [flat[i : i + step] for i in range(0, flat.size, step)] or [flat]


class LocalComm:
    """A world of one: every collective is the identity."""

    rank = 0
    size = 1

    def __init__(self) -> None:
        self.bytes_sent = 0

    def allreduce(self, buf: np.ndarray) -> None:
        return None

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        return None

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        raise RuntimeError("LocalComm has no peers to send to")

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None:
        raise RuntimeError("LocalComm has no peers to receive from")

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return obj

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        return None


class MPIComm:
    """mpi4py on COMM_WORLD (or a given communicator); buffers travel in chunks < 2 GiB."""

    def __init__(self, comm: Any = None, chunk_bytes: int = _DEFAULT_CHUNK) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self.chunk_bytes = chunk_bytes
        self.bytes_sent = 0
        # a background thread may make every MPI call while this one computes (federation.overlap)
        self.serialized_threads = MPI.Query_thread() >= MPI.THREAD_SERIALIZED

    def allreduce(self, buf: np.ndarray) -> None:
        for part in _chunks(buf, self.chunk_bytes):
            self._comm.Allreduce(self._mpi.IN_PLACE, part, op=self._mpi.SUM)
        self.bytes_sent += buf.nbytes

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        for part in _chunks(buf, self.chunk_bytes):
            self._comm.Bcast(part, root=root)
        if self.rank == root:
            self.bytes_sent += buf.nbytes * (self.size - 1)

    def send(self, buf: np.ndarray, dest: int, tag: int = 0) -> None:
        for part in _chunks(buf, self.chunk_bytes):
            self._comm.Send(part, dest=dest, tag=tag)
        self.bytes_sent += buf.nbytes

    def recv(self, buf: np.ndarray, source: int, tag: int = 0) -> None:
        for part in _chunks(buf, self.chunk_bytes):
            self._comm.Recv(part, source=source, tag=tag)

    def allgather(self, obj: Any) -> list[Any]:
        return self._comm.allgather(obj)

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self._comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank: one failing rank must not leave the others blocked in a collective."""
        self._comm.Abort(code)


def under_mpi() -> bool:
    """True when started by a parallel launcher (mpiexec, srun, PALS), without importing MPI."""
    return launcher.launched()


def make_comm(kind: str = "auto", chunk_bytes: int = _DEFAULT_CHUNK) -> Comm:
    """`auto` picks MPI when a launcher started this process, else the local world of one.

    An MPI world whose size differs from the launcher's stops here (`launcher.WorldMismatch`):
    N one-rank worlds would otherwise each run the whole job into the same folder."""
    if kind == "local" or (kind == "auto" and not under_mpi()):
        return LocalComm()
    comm = MPIComm(chunk_bytes=chunk_bytes)
    launcher.check_world(comm.size)
    return comm
