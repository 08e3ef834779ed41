"""The virtual clock of asynchronous aggregation: which client gets the server's next task,
from which model version, and when (in simulated time) its update arrives.

`concurrency` clients train at once. A task's duration is the client's speed factor (the
participation speed model, drawn as a synchronous round would for round version + 1) times
its local steps: simulated time counts local steps of a speed-1 client. Arrivals are ordered
by (finish time, client id). When a slot frees up the next client is drawn uniformly, seeded
by (run seed, dispatch index), among those neither training nor already handed a task from
the current version (a client trains at most once per version, so its training seed
(version + 1, client) is unique and a FedBuff run with K = concurrency = all clients replays
synchronous FedAvg's rounds). Nothing here depends on the rank, and nothing here trains.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from typing import Any

from .. import seeds
from ..config import ParticipationConfig, RunConfig
from ..seeds import Stream
from . import participation


@dataclass(frozen=True)
class Draws:
    """What the config says about the server's next task, resolved once: the clients, how many
    train at once, the run seed of the dispatch draw and the participation section a task's
    speed comes from. Both clocks draw with it (fedlib.engine.virtual: virtual, fedlib.engine.wall:
    wall), so the same (seed, dispatch index) gives the same client on either."""

    clients: int
    slots: int  # concurrency
    seed: int
    participation: ParticipationConfig

    @classmethod
    def of(cls, cfg: RunConfig) -> Draws:
        return cls(cfg.federation.num_clients, cfg.concurrency, cfg.seed, cfg.participation)

    def client(self, dispatched: int, busy: set[int], fresh: set[int]) -> int | None:
        """The client of the server's `dispatched`-th task, uniform among those neither training
        nor already handed a task from the current version (`fresh`); None when there is none."""
        free = [c for c in range(self.clients) if c not in busy and c not in fresh]
        if not free:
            return None
        rng = seeds.rng(self.seed, Stream.DISPATCH, dispatched)
        return free[int(rng.integers(len(free)))]

    def speed(self, version: int, cid: int) -> float:
        """The speed factor of a task from `version`: the client's fate in round version + 1."""
        return participation.fate(self.participation, self.seed, version + 1, cid).speed


@dataclass(frozen=True, order=True)
class Job:
    """One client's training, ordered by arrival: (finish, client id)."""

    finish: float
    cid: int
    dispatch: int  # the server's n-th task
    version: int  # server version the client trains from
    start: float
    speed: float
    steps: int

    def staleness(self, version: int) -> int:
        """τ when applied to make `version`: server versions that appeared while it trained."""
        return version - 1 - self.version


@dataclass
class Clock:
    """Simulated time, the tasks in flight and who already trains from the current version."""

    now: float = 0.0
    dispatched: int = 0
    inflight: list[Job] = field(default_factory=list)  # a heap
    fresh: set[int] = field(default_factory=set)  # clients handed a task from the current version

    def fill(self, draws: Draws, version: int, steps_of: Callable[[int], int]) -> list[Job]:
        """Hand free slots new tasks from `version`; the tasks started."""
        out = []
        busy = {t.cid for t in self.inflight}
        while len(self.inflight) < draws.slots:
            cid = draws.client(self.dispatched, busy, self.fresh)
            if cid is None:  # every idle client already trains from this version: wait for the next
                break
            speed = draws.speed(version, cid)
            steps = steps_of(cid)
            task = Job(self.now + speed * steps, cid, self.dispatched, version, self.now, speed, steps)
            heapq.heappush(self.inflight, task)
            busy.add(cid)
            self.fresh.add(cid)
            self.dispatched += 1
            out.append(task)
        return out

    def pop(self) -> Job:
        """The next arrival; the clock moves to its finish time."""
        task = heapq.heappop(self.inflight)
        self.now = task.finish
        return task

    def new_version(self) -> None:
        self.fresh = set()

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the checkpoint (ServerState.extra)."""
        return {"now": self.now, "dispatched": self.dispatched, "fresh": sorted(self.fresh),
                "inflight": [list(astuple(t)) for t in sorted(self.inflight)]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Clock:
        tasks = [Job(float(f), int(c), int(n), int(v), float(s), float(sp), int(st))
                 for f, c, n, v, s, sp, st in d["inflight"]]
        heapq.heapify(tasks)
        return cls(float(d["now"]), int(d["dispatched"]), tasks, set(d["fresh"]))
