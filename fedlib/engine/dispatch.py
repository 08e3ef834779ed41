"""What the wall clock's server (fedlib.engine.wall) hands out and takes back: which client gets
its next task (`Dispatcher`, the virtual clock's draw by (seed, dispatch index), never by
rank), how a task trains (`trainer`, as on the virtual clock, plus the emulated straggler's
sleep), the one-process link that trains a task when its update is due (`Inline`), an update
as it arrived (`Arrived`, one arrivals.csv row) and a stop signal as a message header's code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .. import privacy
from ..record.metrics import ArrivalRow, Timer
from ..sim.vclock import Draws
from ..wire.tasks import Done, Task, Train
from . import async_steps, stop
from .context import Context


def trainer(ctx: Context, mech: privacy.Mechanism, emulate: bool) -> Train:
    """How a worker trains a task (`async_steps.train_task`, as on the virtual clock), then, with
    `emulate`, sleeps (speed − 1) × its compute."""
    def train(task: Task, base: torch.Tensor) -> tuple[torch.Tensor, float, float, float]:
        payload = torch.empty_like(base)
        res = async_steps.train_task(ctx, mech, task.cid, task.version, base, payload, Timer())
        sleep_s = max(0.0, task.speed - 1.0) * res.compute_s if emulate else 0.0
        time.sleep(sleep_s)
        return payload, res.loss, res.compute_s, sleep_s

    return train


class Inline:
    """One process: `slots` tasks in flight, each trained when the server takes its update."""

    def __init__(self, slots: int, train: Train) -> None:
        self.slots, self._train = list(range(slots)), train
        self._todo: dict[int, tuple[Task, torch.Tensor]] = {}

    def give(self, slot: int, task: Task, weights: torch.Tensor) -> None:
        self._todo[slot] = (task, weights)

    def take(self, timer: Timer) -> Done:
        slot = min(self._todo, key=lambda s: self._todo[s][0].dispatch)
        task, base = self._todo.pop(slot)
        with timer("compute"):
            payload, loss, compute_s, sleep_s = self._train(task, base)
        return Done(task, slot, 0, payload, loss, compute_s, sleep_s, 0.0, 0)

    def close(self) -> None:
        self._todo.clear()


@dataclass
class Dispatcher:
    """Which client the server's next task goes to: the virtual clock's draw, by (seed, dispatch
    index), never by rank."""

    dispatched: int = 0
    fresh: set[int] = field(default_factory=set)  # clients handed a task from the current version

    def next(self, draws: Draws, version: int, busy: set[int]) -> Task | None:
        cid = draws.client(self.dispatched, busy, self.fresh)
        if cid is None:  # every idle client already trains from this version: wait for the next
            return None
        task = Task(self.dispatched, cid, version, draws.speed(version, cid))
        self.dispatched += 1
        self.fresh.add(cid)
        return task


@dataclass(frozen=True)
class Arrived:
    """An update the server took, with its hand-out and arrival times (rank 0's seconds)."""

    done: Done
    start_s: float
    end_s: float

    def row(self, v: int) -> ArrivalRow:
        d, t = self.done, self.done.task
        return ArrivalRow(v, t.dispatch, t.cid, d.rank, t.version, v - 1 - t.version, self.start_s,
                          self.end_s, d.compute_s, d.sleep_s, d.idle_s, d.loss)


def signal_code(signals: stop.Signals) -> int:
    """A received stop signal as a number for a message header: 1 + its index, or 0."""
    return stop.SIGNALS.index(signals.received) + 1 if signals.received in stop.SIGNALS else 0
