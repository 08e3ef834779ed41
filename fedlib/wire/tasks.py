"""Tasks and updates between the asynchronous server (rank 0) and its worker ranks, point to
point (federation.clock: wall; fedlib.engine.wall).

A task is a small header — dispatch index, client, version, speed factor — followed by that
version's weights only when the worker does not hold them yet. An update is a header — loss,
measured compute, emulated sleep, the worker's idle wait, bytes sent — followed by the payload.
The server takes updates from whichever worker sends first (`Comm.recv_any`); MPI keeps one
sender's messages in order, so the payload after a header is that worker's. Nothing here
trains: the worker is handed a `Train` function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .comm import Comm
from .timer import Timer

TASK, WEIGHTS, DONE, PAYLOAD = 71, 72, 73, 74  # message tags
HEADER = 8  # float64 slots of a header (integers below 2**53 are exact)
STOP, WORK = 0.0, 1.0


@dataclass(frozen=True)
class Task:
    """One client's training: the server's `dispatch`-th task, from server `version`."""

    dispatch: int
    cid: int
    version: int
    speed: float  # participation speed factor of (version + 1, client)


@dataclass(frozen=True)
class Done:
    """A trained task as the server receives it."""

    task: Task
    slot: int  # the worker it ran on (a rank, or one-process slot)
    rank: int
    payload: torch.Tensor
    loss: float
    compute_s: float
    sleep_s: float  # participation.emulate_speed
    idle_s: float  # the worker's wait for this task
    bytes_sent: int  # by the worker, for this update
    signal: int = 0  # 1 + the index in fedlib.engine.stop.SIGNALS of a signal the worker received, else 0


# (task, base weights) -> (payload, loss, compute seconds, slept seconds)
Train = Callable[[Task, torch.Tensor], tuple[torch.Tensor, float, float, float]]


def _header(*values: float) -> torch.Tensor:
    out = torch.zeros(HEADER, dtype=torch.float64)
    out[: len(values)] = torch.tensor(values, dtype=torch.float64)
    return out


class Remote:
    """The server's side: one worker per rank 1..size-1, one task at a time each."""

    def __init__(self, comm: Comm, numel: int, device: torch.device) -> None:
        self.comm = comm
        self.slots = list(range(1, comm.size))
        self._held = dict.fromkeys(self.slots, -1)  # the version each worker holds
        self._tasks: dict[int, Task] = {}  # in flight, by worker
        self._hdr = _header()
        self._payload = torch.empty(numel, device=device)

    def give(self, slot: int, task: Task, weights: torch.Tensor) -> None:
        """Hand `task` to worker `slot`, with `weights` (its version's) unless it holds them."""
        send = self._held[slot] != task.version
        self.comm.send(_header(WORK, task.dispatch, task.cid, task.version, task.speed, send), slot, TASK)
        if send:
            self.comm.send(weights, slot, WEIGHTS)
            self._held[slot] = task.version
        self._tasks[slot] = task

    def take(self, timer: Timer) -> Done:
        """The next update to arrive, from any worker (the wait is the server's idle time)."""
        with timer("wait"):
            rank = self.comm.recv_any(self._hdr, DONE)
        with timer("comm"):
            self.comm.recv(self._payload, rank, PAYLOAD)
        loss, compute_s, sleep_s, idle_s, nbytes, sig = self._hdr.tolist()[:6]
        return Done(self._tasks.pop(rank), rank, rank, self._payload.clone(), loss, compute_s, sleep_s,
                    idle_s, int(nbytes), int(sig))

    def close(self) -> None:
        """Take (and drop) the updates still in flight, then stop every worker."""
        while self._tasks:
            self.take(Timer())
        for rank in self.slots:
            self.comm.send(_header(STOP), rank, TASK)


def work(comm: Comm, numel: int, device: torch.device, train: Train, signal: Callable[[], int]) -> None:
    """A worker rank: wait for a task, train it from its version's weights, send the update
    back; until the server says stop. `signal()` (a stop signal's code, or 0) goes with each
    update, so the server stops the run when any rank was told to."""
    hdr, base = _header(), torch.empty(numel, device=device)
    while True:
        t = time.perf_counter()
        comm.recv(hdr, 0, TASK)
        idle_s = time.perf_counter() - t
        kind, dispatch, cid, version, speed, fresh = hdr.tolist()[:6]
        if kind == STOP:
            return
        if fresh:
            comm.recv(base, 0, WEIGHTS)
        payload, loss, compute_s, sleep_s = train(Task(int(dispatch), int(cid), int(version), speed), base)
        nbytes = HEADER * 8 + payload.numel() * payload.element_size()
        comm.send(_header(loss, compute_s, sleep_s, idle_s, nbytes, signal()), 0, DONE)
        comm.send(payload, 0, PAYLOAD)
