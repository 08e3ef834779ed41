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

Every server step goes to the loop body (fedlib.engine.body) on rank 0, as the other loops'
versions do: score, keep, charge, admit, hand the freed workers their tasks, checkpoint, rows.
DP-SGD runs here too: the server charges a task's spending (its client's σ, q and local steps,
all known from the config) when it hands the task out, so the workers never report it.

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
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import config, privacy
from ..privacy.mechanism import Work
from ..record.metrics import ClientRow, RoundRow, Timer, phase_fields
from ..record.recorder import Recorder
from ..sim.vclock import Draws
from ..strategies import ServerState
from ..wire import tasks
from ..wire.comm import LocalComm
from ..wire.tasks import Task
from . import async_steps, body, lifecycle, stop
from .context import Context
from .dispatch import Arrived, Dispatcher, Inline, signal_code, trainer

__all__ = ["Arrived", "Dispatcher", "Inline", "WallServer", "replay", "run_wall", "serve", "signal_code",
           "trainer"]


@dataclass
class WallServer(body.AsyncWork):
    """Rank 0's wall-clock server: its links to the workers and the tasks in flight, and its
    hooks for the loop body (fedlib.engine.body.Loop)."""

    ctx: Context  # the scoring context: the server scores alone, its workers are training
    run: Context  # the run's (its comm, for rows and bytes)
    mech: privacy.Mechanism
    rec: Recorder
    link: Inline | tasks.Remote
    signals: stop.Signals
    disp: Dispatcher
    draws: Draws
    origin: float  # perf_counter at wall second 0 (a resume continues the seconds)
    elapsed: float  # wall seconds at the last update applied
    unit: str = "step"
    idle: list[int] = field(default_factory=list)
    inflight: dict[int, Task] = field(default_factory=dict)  # slot -> task
    starts: dict[int, float] = field(default_factory=dict)  # dispatch -> hand-out second
    buffer: list[Arrived] = field(default_factory=list)  # the step just made
    handed: int = 0  # tasks handed out while it was made and after it
    sent0: int = 0

    def fill(self, version: int, weights: torch.Tensor) -> Work:
        """Hand idle slots tasks from `version` (up to concurrency); what was handed out."""
        work = []
        while self.idle and len(self.inflight) < min(self.ctx.cfg.concurrency, len(self.link.slots)):
            task = self.disp.next(self.draws, version, {t.cid for t in self.inflight.values()})
            if task is None:
                break
            slot = self.idle.pop(0)
            self.starts[task.dispatch] = time.perf_counter() - self.origin
            self.link.give(slot, task, weights)
            self.inflight[slot] = task
            work.append((task.cid, self.ctx.steps(task.cid)))
        self.handed += len(work)
        return work

    def make(self, state: ServerState, timer: Timer) -> body.Made:
        """Take updates as they arrive (handing out tasks as slots free up) until the buffer holds
        K, then step: the next version."""
        self.buffer, self.handed, work = [], 0, list[tuple[int, int]]()
        while len(self.buffer) < self.ctx.cfg.buffer_size:
            with timer("comm"):
                work += self.fill(state.round, state.weights)
            done = self.link.take(timer)
            del self.inflight[done.slot]
            self.idle.append(done.slot)
            start = self.starts.pop(done.task.dispatch)
            self.buffer.append(Arrived(done, start, time.perf_counter() - self.origin))
        with timer("aggregate"):
            updates = [(a.done.task.cid, state.round - a.done.task.version, a.done.payload)
                       for a in self.buffer]
            new = async_steps.apply(self.ctx, self.mech, state, updates)
        self.disp.fresh = set()
        return body.Made(new, state, work, timer, f"at server step {new.round}")

    def go(self, state: ServerState, timer: Timer) -> Work:
        with timer("comm"):  # freed workers start from the new version at once
            return self.fill(state.round, state.weights)

    def saved(self, state: ServerState, timer: Timer, diverged: bool) -> ServerState:
        wall = {"dispatched": self.disp.dispatched, "elapsed_s": self.buffer[-1].end_s}
        return replace(state, extra={**state.extra, "wall": wall})

    def rows(self, made: body.Made, state: ServerState, ev: lifecycle.Scores) -> body.Rows:
        v, seconds = made.state.round, made.timer.close()
        nbytes = self.run.comm.bytes_sent - self.sent0 + sum(a.done.bytes_sent for a in self.buffer)
        self.rec.write_arrivals(a.row(v) for a in self.buffer)  # before the checkpoint is committed
        rows = partial(_rows, self.run, self.mech, v, self.buffer, seconds, nbytes, self.handed,
                       self.elapsed, ev, state)
        self.elapsed = self.buffer[-1].end_s
        return rows

    def signal(self) -> str | None:
        """A signal rank 0 received, or one a worker reported with an update of this step."""
        code = max([signal_code(self.signals), *(a.done.signal for a in self.buffer)])
        return stop.SIGNALS[code - 1] if code else None


def serve(ctx: Context, mech: privacy.Mechanism, link: Inline | tasks.Remote, state: ServerState,
          rec: Recorder, signals: stop.Signals) -> tuple[ServerState, str | None, bool, str | None]:
    """Rank 0's loop: make a version from the arrivals, hand it to the loop body
    (fedlib.engine.body.after). Returns the final state, why it stopped early (or None), whether
    it diverged, and the stop signal rank 0 or a worker received (the step it ends is then
    checkpointed)."""
    saved = state.extra.get("wall", {})
    elapsed = float(saved.get("elapsed_s", 0.0))
    srv = WallServer(replace(ctx, comm=LocalComm()), ctx, mech, rec, link, signals,
                 Dispatcher(int(saved.get("dispatched", 0))), Draws.of(ctx.cfg),
                 time.perf_counter() - elapsed, elapsed, idle=list(link.slots))
    try:
        while state.round < ctx.cfg.federation.rounds:
            timer = Timer()
            srv.sent0 = ctx.comm.bytes_sent
            end = body.after(srv, mech, rec, srv.make(state, timer))
            state = end.state
            if end.stopped is not None or end.signame is not None:
                return state, end.stopped, end.diverged, end.signame
    finally:
        link.close()
    return state, None, False, None


def _rows(ctx: Context, mech: privacy.Mechanism, v: int, buffer: list[Arrived], t: dict[str, float],
          nbytes: int, handed: int, last: float, ev: lifecycle.Scores, state: ServerState
          ) -> tuple[RoundRow, list[ClientRow]]:
    """A server step's rounds.csv row (rank 0's phases; `wait` = waiting for arrivals) and its
    clients.csv rows, one per update applied; the privacy metrics are those of `state`, the
    state checkpointed and kept."""
    cfg, privacy_metrics = ctx.cfg, dict[str, Any](mech.metrics(state, v))
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
        **phase_fields(t), compute_max_s=max(a.done.compute_s for a in buffer),
        wait_max_s=max(t["wait"], *(a.done.idle_s for a in buffer)),
        train_loss=float(np.average([a.done.loss for a in buffer], weights=n)),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2], sim_round_s=buffer[-1].end_s - last,
        mode=cfg.federation.mode, virtual_s=buffer[-1].end_s, staleness_mean=float(np.mean(taus)),
        staleness_max=max(taus), **privacy_metrics,
    )
    return row, clients


def run_wall(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState, signals: stop.Signals
             ) -> lifecycle.Ending:
    """The wall-clock loop over what the runner built: rank 0 serves, the others work; every
    rank ends with the server's final state. No collective per step: workers report a stop
    signal with their updates."""
    cfg, comm = ctx.cfg, ctx.comm
    train, numel = trainer(ctx, mech, cfg.participation.emulate_speed), ctx.flat.numel
    stopped, diverged, signame = None, False, None
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


LOG_COLUMNS = ("round", "dispatch", "client_id", "from_version")  # what replay reads of arrivals.csv


def replay(cfg: config.RunConfig, arrivals: Path | pd.DataFrame | None = None) -> ServerState:
    """Redo a wall-clock run in this process from its arrivals log (default: the run's
    arrivals.csv): every update trained from its logged version with its seed, applied in the
    logged order. Ends with the wall run's final model (training is deterministic per seed). A
    log that no run could have written (a missing column, a client or version that does not
    exist) is refused in one line (ValueError) before anything trains."""
    arrivals = cfg.run_dir / "arrivals.csv" if arrivals is None else arrivals
    where = arrivals if isinstance(arrivals, Path) else "arrivals log"
    log = arrivals if isinstance(arrivals, pd.DataFrame) else pd.read_csv(arrivals)
    rows = _checked(log, where, cfg.federation.num_clients)
    if cfg.threads is not None:  # the run's kernels: other thread counts sum in other orders
        torch.set_num_threads(cfg.threads)
    ctx = Context.build(cfg, LocalComm())
    mech = privacy.make(cfg, ctx.shards, ctx.model, ctx.comm)
    train = trainer(ctx, mech, emulate=False)
    state = ServerState(ctx.flat.get())
    last_use = {r[3]: i for i, r in enumerate(rows)}
    bases, seen = {0: state.weights}, 0
    for v, group in itertools.groupby(rows, key=lambda r: r[0]):
        updates = list(group)
        if v != state.round + 1:
            raise ValueError(f"{where}: version {v} follows version {state.round}; not one run's log")
        todo = [Task(d, c, fv, 1.0) for _, d, c, fv in updates]
        if bad := next((t for t in todo if t.version not in bases), None):
            raise ValueError(f"{where}: version {v}'s update from client {bad.cid} trained from version "
                             f"{bad.version}, which the run had not made (versions 0-{state.round}); "
                             "not one run's log")
        trained = [(t.cid, state.round - t.version, train(t, bases[t.version])[0]) for t in todo]
        state = async_steps.apply(ctx, mech, state, trained)
        seen += len(updates)
        bases[state.round] = state.weights
        bases = {u: w for u, w in bases.items() if last_use.get(u, -1) >= seen}
    return state


def _checked(log: pd.DataFrame, where: object, clients: int) -> list[tuple[int, int, int, int]]:
    """The log's (round, dispatch, client, from_version) rows as integers, or a one-line refusal."""
    if missing := [c for c in LOG_COLUMNS if c not in log.columns]:
        raise ValueError(f"{where}: not an arrivals log: no column {', '.join(missing)} "
                         f"(it has {', '.join(map(str, log.columns[:6]))})")
    try:
        rows = [(int(a), int(b), int(c), int(d))
                for a, b, c, d in log[list(LOG_COLUMNS)].itertuples(index=False)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: a value in {', '.join(LOG_COLUMNS)} is not a whole number ({e})"
                         ) from None
    if bad := next((r for r in rows if not 0 <= r[2] < clients), None):
        raise ValueError(f"{where}: version {bad[0]} applies an update of client {bad[2]}, but the run has "
                         f"clients 0-{clients - 1}")
    return rows
