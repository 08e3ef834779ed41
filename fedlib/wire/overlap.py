"""Overlap communication with training (`federation.overlap`).

A `Pipeline` runs an exchange's message jobs — a client's send, or rank 0's receive-and-sum —
on one background thread, in submission order, while the caller trains the next client. With
overlap off the same jobs run inline, so both paths share one code path and sum in the same
order (results are bitwise identical). A `Ring` of staging buffers bounds the memory: taking a
buffer waits until the job that last used it has finished.

Seconds: jobs on the background thread are not timed; the caller's `comm` phase counts only
the time it is *blocked* on them (a busy buffer, the final drain). MPI must be initialized
with at least MPI_THREAD_SERIALIZED (mpi4py's default is MULTIPLE); while jobs are in flight
the caller makes no MPI calls.

On a GPU the background jobs queue their copies and kernels on a stream of their own (else
they wait behind the training stream's kernels and little overlaps): each job first waits for
an event recorded on the caller's stream when it was submitted (the buffers it reads are
ready), and finishes by synchronizing its stream (what it wrote is ready when `drain` returns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from .timer import Timer

Job = Callable[[Timer], None]
B = TypeVar("B")


class Pipeline:
    """Runs jobs inline (`enabled=False`) or in order on one background thread."""

    def __init__(self, enabled: bool, device: Any = None) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fedlib-comm") if enabled else None
        self._pending: list[Future[None]] = []
        self._device = device
        self._stream = None
        if enabled and device is not None and device.type == "cuda":
            import torch

            self._stream = torch.cuda.Stream(device)

    def run(self, job: Job, timer: Timer) -> Future[None] | None:
        if self._pool is None:
            job(timer)
            return None
        if self._stream is not None:
            import torch

            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self._device))
            fut = self._pool.submit(self._on_stream, job, ready)
        else:
            fut = self._pool.submit(job, Timer())
        self._pending.append(fut)
        return fut

    def _on_stream(self, job: Job, ready: Any) -> None:
        import torch

        stream = self._stream
        assert stream is not None  # set in __init__ whenever ready events are made
        with torch.cuda.stream(stream):
            stream.wait_event(ready)
            job(Timer())
        stream.synchronize()

    def drain(self, timer: Timer) -> None:
        """Wait for every submitted job (re-raising the first failure)."""
        with timer("comm"):
            for fut in self._pending:
                fut.result()
        self._pending.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class Ring(Generic[B]):
    """Buffers reused in turn."""

    def __init__(self, buffers: Sequence[B]) -> None:
        self.buffers = list(buffers)
        self._jobs: list[Future[None] | None] = [None] * len(self.buffers)
        self._next = 0

    def take(self, timer: Timer) -> tuple[int, B]:
        """The next buffer, once the job that last used it is done (blocked time is `comm`)."""
        i = self._next
        self._next = (i + 1) % len(self.buffers)
        job = self._jobs[i]
        if job is not None:
            with timer("comm"):
                job.result()
            self._jobs[i] = None
        return i, self.buffers[i]

    def hold(self, i: int, job: Future[None] | None) -> None:
        self._jobs[i] = job
