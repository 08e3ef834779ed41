"""Asynchronous aggregation on the wall clock (federation.clock: wall): real asynchrony over MPI.

Rank 0 serves: it holds the global model and its version, hands tasks out and applies the
updates as they arrive, with the virtual clock's strategy functions (FedBuff's buffer of K,
FedAsync's mixing, s(τ) of the staleness). Every other rank is a worker that trains one task
at a time, continuously: a task is a client drawn as the virtual clock draws it (by (seed,
dispatch index) among clients neither training nor already handed a task from the current
version, fedlib.sim.vclock) and trains from the version current when it is handed out, with the
seed (version + 1, client). At most min(concurrency, workers) tasks are in flight. Messages go
point to point (fedlib.wire.tasks); the server takes whichever update arrives first. On one
rank the process serves and trains in turn: `concurrency` slots, each task trained when the
server needs its update (oldest first).

Which update arrives first is up to the machines, so a wall run is not reproducible from its
config — but it is from its record: `arrivals.csv` lists every applied update in order (task,
versions, wall seconds), and `replay(cfg)` redoes the run from it in one process and ends with
the same model. `participation.emulate_speed` makes a client of speed factor f hold its rank
(f − 1) × its measured compute by sleeping, so stragglers are real seconds on one box where
ranks are equally fast (a factor below 1 cannot be emulated: nothing sleeps).

rounds.csv: one row per server step; `wait_s` is the server's idle time waiting for arrivals,
`virtual_s` the wall seconds since the run started. clients.csv: `idle_s` is the worker's wait
for that task, `sim_s` the task's wall seconds from hand-out to arrival.

The checkpoint (every federation.checkpoint_every server steps, like the virtual clock) holds
the server state right after a step — weights, version, optimizer, the dispatch count, the wall
seconds so far; the buffer is empty then. Tasks in flight at an interruption are lost and the
clients simply get new tasks when the run resumes (`--resume`), so a resumed wall run is a
valid run, but not the one an uninterrupted run would have been. SIGTERM / SIGUSR1 (on rank 0,
or on a worker, which says so with its next update) end the run after the server step in
progress, checkpointed, with `stop.Preempted` on every rank, as synchronous rounds do.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import config, privacy
from ..record.metrics import ArrivalRow, ClientRow, RoundRow, Timer
from ..record.recorder import Recorder
from ..sim.vclock import Draws
from ..strategies import ServerState
from ..wire import tasks
from ..wire.comm import LocalComm
from ..wire.tasks import Done, Task, Train
from . import async_steps, lifecycle, stop
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


def serve(ctx: Context, mech: privacy.Mechanism, link: Inline | tasks.Remote, state: ServerState,
          rec: Recorder, signals: stop.Signals) -> tuple[ServerState, str | None, bool, str | None]:
    """Rank 0's loop: hand tasks out, take updates as they arrive, step every K, score,
    checkpoint, record. Returns the final state, why it stopped early (or None), whether it
    diverged, and the stop signal rank 0 or a worker received (the step it ends is then
    checkpointed)."""
    cfg, fed = ctx.cfg, ctx.cfg.federation
    saved = state.extra.get("wall", {})
    disp, draws = Dispatcher(int(saved.get("dispatched", 0))), Draws.of(cfg)
    origin = time.perf_counter() - float(saved.get("elapsed_s", 0.0))
    idle, inflight, starts = list(link.slots), dict[int, Task](), dict[int, float]()
    limit = min(cfg.concurrency, len(link.slots))
    alone = replace(ctx, comm=LocalComm())  # the server scores by itself: its workers are training
    stopped, diverged, signame, last = None, False, None, float(saved.get("elapsed_s", 0.0))

    def fill(version: int, weights: torch.Tensor) -> int:
        n = 0
        while idle and len(inflight) < limit:
            task = disp.next(draws, version, {t.cid for t in inflight.values()})
            if task is None:
                break
            slot = idle.pop(0)
            starts[task.dispatch] = time.perf_counter() - origin
            link.give(slot, task, weights)
            inflight[slot], n = task, n + 1
        return n

    try:
        while state.round < fed.rounds:
            timer, sent0, before, buffer, handed = Timer(), ctx.comm.bytes_sent, state, list[Arrived](), 0
            while len(buffer) < cfg.buffer_size:
                with timer("comm"):
                    handed += fill(state.round, state.weights)
                done = link.take(timer)
                del inflight[done.slot]
                idle.append(done.slot)
                buffer.append(Arrived(done, starts.pop(done.task.dispatch), time.perf_counter() - origin))
            with timer("aggregate"):
                updates = [(a.done.task.cid, state.round - a.done.task.version, a.done.payload)
                           for a in buffer]
                state = async_steps.apply(ctx, mech, state, updates)
            disp.fresh = set()
            v = state.round
            ev, stopped = lifecycle.score(alone, state, v, timer, f"at server step {v}")
            if diverged := stopped is not None:
                stopped += f"; stopped, the checkpoint keeps step {before.round} (the last finite state)"
                state = before
            else:
                with timer("comm"):  # freed workers start from the new version at once
                    handed += fill(v, state.weights)
                wall = {"dispatched": disp.dispatched, "elapsed_s": buffer[-1].end_s}
                state = replace(state, extra={**state.extra, "wall": wall})
            if diverged or lifecycle.due(fed, v):
                with timer("checkpoint"):
                    rec.write_checkpoint(state)
            seconds = timer.close()
            nbytes = ctx.comm.bytes_sent - sent0 + sum(a.done.bytes_sent for a in buffer)
            rec.write_arrivals(a.row(v) for a in buffer)
            rec.write_round(partial(_rows, ctx, v, buffer, seconds, nbytes, handed, last, ev))
            last = buffer[-1].end_s
            if stopped is not None:  # diverged
                rec.note(stopped)
                break
            code = max([signal_code(signals), *(a.done.signal for a in buffer)])
            if code:  # a batch system's stop: keep this step, let the tasks in flight go
                signame = stop.SIGNALS[code - 1]
                rec.checkpoint_now(state)
                break
    finally:
        link.close()
    return state, stopped, diverged, signame


def _rows(ctx: Context, v: int, buffer: list[Arrived], t: dict[str, float], nbytes: int, handed: int,
          last: float, ev: lifecycle.Scores) -> tuple[RoundRow, list[ClientRow]]:
    """A server step's rounds.csv row (rank 0's phases; `wait` = waiting for arrivals) and its
    clients.csv rows, one per update applied."""
    cfg = ctx.cfg
    taus = [v - 1 - a.done.task.version for a in buffer]
    n = [len(ctx.shards[a.done.task.cid]) for a in buffer]
    steps = [ctx.steps(a.done.task.cid) for a in buffer]
    clients = [ClientRow(v, a.done.task.cid, a.done.rank, k, s, a.done.loss, a.done.compute_s,
                         a.done.task.speed, a.end_s - a.start_s, "ok", tau, a.done.idle_s)
               for a, k, s, tau in zip(buffer, n, steps, taus, strict=True)]
    row = RoundRow(
        round=v, algorithm=cfg.strategy.algorithm, model=cfg.model.name,
        aggregation=cfg.federation.aggregation, ranks=ctx.comm.size, clients=cfg.federation.num_clients,
        sampled=handed, aggregated=len(buffer),
        params=ctx.flat.numel, payload_bytes=ctx.flat.numel * 4, bytes_comm=int(nbytes),
        round_s=t["round"], compute_s=t["compute"], pack_s=t["pack"], wait_s=t["wait"], comm_s=t["comm"],
        aggregate_s=t["aggregate"], eval_s=t["eval"], checkpoint_s=t["checkpoint"], other_s=t["other"],
        copy_s=t["copy"], compute_max_s=max(a.done.compute_s for a in buffer),
        wait_max_s=max(t["wait"], *(a.done.idle_s for a in buffer)),
        train_loss=float(np.average([a.done.loss for a in buffer], weights=n)),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2], sim_round_s=buffer[-1].end_s - last,
        mode=cfg.federation.mode, virtual_s=buffer[-1].end_s, staleness_mean=float(np.mean(taus)),
        staleness_max=max(taus),
    )
    return row, clients


def run_wall(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState) -> lifecycle.Ending:
    """The wall-clock loop over what the runner built: rank 0 serves, the others work; every
    rank ends with the server's final state. The runner closes the record and writes the summary."""
    cfg, comm = ctx.cfg, ctx.comm
    train, numel = trainer(ctx, mech, cfg.participation.emulate_speed), ctx.flat.numel
    stopped, diverged, signame = None, False, None
    with stop.Signals() as signals:  # no collective per step: workers report theirs with updates
        if comm.rank == 0:
            one = comm.size == 1  # the server trains too
            link = Inline(cfg.concurrency, train) if one else tasks.Remote(comm, numel, ctx.device)
            state, stopped, diverged, signame = serve(ctx, mech, link, state, rec, signals)
        else:
            tasks.work(comm, numel, ctx.device, train, partial(signal_code, signals))
    rnd, stopped, diverged, signame = comm.bcast_obj((state.round, stopped, diverged, signame))
    if signame is not None:  # every rank stops cleanly, the checkpoint holds step `rnd`
        raise stop.Preempted(cfg.name, signame, cfg.run_dir, rnd)
    weights = state.weights.clone()
    comm.broadcast(weights)
    if comm.rank != 0:
        state = ServerState(weights, rnd)
    return lifecycle.Ending(state, stopped, diverged)


def replay(cfg: config.RunConfig, arrivals: Path | pd.DataFrame | None = None) -> ServerState:
    """Redo a wall-clock run in this process from its arrivals log (default: the run's
    arrivals.csv): every update trained from its logged version with its seed, applied in the
    logged order. Ends with the wall run's final model (training is deterministic per seed)."""
    arrivals = cfg.run_dir / "arrivals.csv" if arrivals is None else arrivals
    log = arrivals if isinstance(arrivals, pd.DataFrame) else pd.read_csv(arrivals)
    if cfg.threads is not None:  # the run's kernels: other thread counts sum in other orders
        torch.set_num_threads(cfg.threads)
    ctx = Context.build(cfg, LocalComm())
    mech = privacy.make(cfg, ctx.shards, ctx.model, ctx.comm)
    train = trainer(ctx, mech, emulate=False)
    state = ServerState(ctx.flat.get())
    rows = list(log.itertuples(index=False))
    last_use = {int(r.from_version): i for i, r in enumerate(rows)}
    bases, seen = {0: state.weights}, 0
    for v, group in itertools.groupby(rows, key=lambda r: int(r.round)):
        updates = list(group)
        if v != state.round + 1:
            raise ValueError(f"arrivals log: version {v} follows version {state.round}; not one run's log")
        todo = [Task(int(r.dispatch), int(r.client_id), int(r.from_version), 1.0) for r in updates]
        trained = [(t.cid, state.round - t.version, train(t, bases[t.version])[0]) for t in todo]
        state = async_steps.apply(ctx, mech, state, trained)
        seen += len(updates)
        bases[state.round] = state.weights
        bases = {u: w for u, w in bases.items() if last_use.get(u, -1) >= seen}
    return state
