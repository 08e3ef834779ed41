"""Asynchronous aggregation on the virtual clock (federation.mode: fedbuff | fedasync).

The server hands tasks to `concurrency` clients (fedlib.sim.vclock); each arrival goes into the
FedBuff buffer, which is applied every K arrivals (fedlib.strategies.fedbuff), or is mixed in
at once (fedlib.strategies.fedasync). One server step — one new version — is one row of
rounds.csv; each goes to the loop body (fedlib.engine.body), which hands the freed slots their
tasks (`Virtual.go`) once the budget admits the next step. A task's DP-SGD spending is charged
when it is handed out (so a checkpoint's spending covers the tasks in flight it holds).

Training is lazy and batched: when an arrival's update is needed and not yet computed, every
task in flight that has not trained is trained then, all at once, placed on ranks as a round
places its clients, each from its own version's weights with its own seed (version + 1,
client), and the updates are gathered to every rank by one allreduce of a zero-padded
(tasks × params) matrix. A client's update depends only on its version, shard and seed, and
the allreduce adds zeros, so the model does not depend on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from .. import privacy
from ..privacy.mechanism import Work
from ..record.metrics import ClientRow, RoundRow, Timer, phase_fields
from ..record.recorder import Recorder
from ..sim.vclock import Clock, Draws, Job
from ..strategies import ServerState
from . import async_steps, body, lifecycle, stop
from .context import Context

TAIL = 3  # per-task slots after the parameters: loss, measured compute seconds, rank


@dataclass(frozen=True)
class Trained:
    """A trained task's result, on every rank: Δ (fedbuff) or the client's weights (fedasync)."""

    payload: torch.Tensor
    loss: float
    compute_s: float
    rank: int


@dataclass
class Server:
    """The asynchronous server's state besides ServerState: clock, finished-but-unapplied
    results, the buffer, and the base weights of versions that untrained tasks start from."""

    clock: Clock = field(default_factory=Clock)
    results: dict[int, Trained] = field(default_factory=dict)  # dispatch -> result
    buffer: list[tuple[Job, Trained]] = field(default_factory=list)
    bases: dict[int, torch.Tensor] = field(default_factory=dict)  # version -> weights

    def hand_out(self, draws: Draws, state: ServerState, steps_of: Callable[[int], int]) -> Work:
        """Fill the clock's free slots with tasks from `state`'s version, keeping its weights as
        their base; what was handed out (client, local steps), to charge."""
        handed = self.clock.fill(draws, state.round, steps_of)
        for t in handed:
            self.bases.setdefault(t.version, state.weights)
        return [(t.cid, t.steps) for t in handed]

    def to_dict(self) -> dict[str, Any]:
        """Checkpointable (call after `train_pending`: then no base weights are needed)."""
        res = {n: [r.payload, r.loss, r.compute_s, r.rank] for n, r in self.results.items()}
        buf = [[list(astuple(t)), r.payload, r.loss, r.compute_s, r.rank] for t, r in self.buffer]
        return {"clock": self.clock.to_dict(), "results": res, "buffer": buf}

    @classmethod
    def from_dict(cls, d: dict[str, Any], device: torch.device) -> Server:
        def trained(p: torch.Tensor, loss: float, compute_s: float, rank: int) -> Trained:
            return Trained(p.to(device), float(loss), float(compute_s), int(rank))

        res = {int(n): trained(*r) for n, r in d["results"].items()}
        buf = [(Job(*t), trained(*r)) for t, *r in d["buffer"]]
        return cls(Clock.from_dict(d["clock"]), res, buf)


def train_pending(ctx: Context, mech: privacy.Mechanism, srv: Server, timer: Timer) -> None:
    """Train every task in flight without a result, on the ranks the placement gives it."""
    comm, flat = ctx.comm, ctx.flat
    todo = sorted((t for t in srv.clock.inflight if t.dispatch not in srv.results), key=lambda t: t.dispatch)
    if not todo:
        return
    plan = ctx.place([t.cid for t in todo])  # a client is in flight at most once: ids are unique
    mine = set(plan[comm.rank])
    buf = torch.zeros(len(todo), flat.numel + TAIL, device=ctx.device)
    for i, t in enumerate(todo):
        if t.cid not in mine:
            continue
        base, row = srv.bases[t.version], buf[i, : flat.numel]
        res = async_steps.train_task(ctx, mech, t.cid, t.version, base, row, timer)
        with timer("pack"):
            buf[i, flat.numel:] = torch.tensor((res.loss, res.compute_s, comm.rank), dtype=buf.dtype)
    with timer("wait"):  # idle until the slowest rank has trained its share
        comm.barrier()
    with timer("comm"):
        comm.allreduce(buf)
    tail = buf[:, flat.numel:].cpu().numpy()
    for i, t in enumerate(todo):
        srv.results[t.dispatch] = Trained(buf[i, : flat.numel], float(tail[i, 0]), float(tail[i, 1]),
                                          int(round(tail[i, 2])))
    used = {t.version for t in srv.clock.inflight if t.dispatch not in srv.results}
    srv.bases = {v: w for v, w in srv.bases.items() if v in used}


@dataclass(frozen=True)
class Step:
    """What one server step applied and handed out."""

    state: ServerState
    applied: list[tuple[Job, Trained]]
    work: Work  # the tasks handed out while it was made (client, local steps)
    start_s: float  # simulated time of the previous version


def step(ctx: Context, mech: privacy.Mechanism, srv: Server, state: ServerState, draws: Draws,
         timer: Timer) -> Step:
    """Run arrivals until the server makes its next version, handing tasks out with `draws` (the
    config's, resolved once per run); every rank returns the same. The slots it frees are filled
    by the loop body once the new version is admitted (`Virtual.go`)."""
    start, work = srv.clock.now, list[tuple[int, int]]()
    while True:
        work += srv.hand_out(draws, state, ctx.steps)
        if srv.clock.inflight[0].dispatch not in srv.results:  # the next arrival has not trained
            train_pending(ctx, mech, srv, timer)
        task = srv.clock.pop()
        srv.buffer.append((task, srv.results.pop(task.dispatch)))
        if len(srv.buffer) >= ctx.cfg.buffer_size:
            break
    applied, srv.buffer = srv.buffer, []
    version = state.round + 1
    with timer("aggregate"):
        updates = [(t.cid, t.staleness(version), r.payload) for t, r in applied]
        state = async_steps.apply(ctx, mech, state, updates)
    srv.clock.new_version()
    return Step(state, applied, work, start)


@dataclass
class Virtual(body.AsyncWork):
    """The virtual clock's hooks for the loop body (fedlib.engine.body.Loop)."""

    ctx: Context
    mech: privacy.Mechanism
    srv: Server
    draws: Draws
    signals: stop.Signals
    unit: str = "step"
    out: Step | None = None  # the step just made
    handed: int = 0  # tasks `go` handed out after it
    sent0: int = 0

    def go(self, state: ServerState, timer: Timer) -> Work:
        work = self.srv.hand_out(self.draws, state, self.ctx.steps)  # freed slots start from the new version
        self.handed = len(work)
        return work

    def saved(self, state: ServerState, timer: Timer, diverged: bool) -> ServerState:
        """A diverged run keeps the last finite weights without the server (its clock moved on:
        the clock restarts on resume); otherwise the server goes inside (`with_server`)."""
        return state if diverged else with_server(self.ctx, self.mech, self.srv, state, timer)

    def rows(self, made: body.Made, state: ServerState, ev: lifecycle.Scores) -> body.Rows:
        out, comm = self.out, self.ctx.comm
        assert out is not None
        reports = comm.allgather((made.timer.close(), comm.bytes_sent - self.sent0))
        return partial(_rows, self.ctx, self.mech, out, len(out.work) + self.handed, state, reports, ev)

    def signal(self) -> str | None:
        return self.signals.agreed(self.ctx.comm)


def run_virtual(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState,
                signals: stop.Signals) -> lifecycle.Ending:
    """The async counterpart of the synchronous rounds over what the runner built: same files,
    one row per server step, each step handed to the loop body (fedlib.engine.body.after)."""
    cfg, comm, fed = ctx.cfg, ctx.comm, ctx.cfg.federation
    srv = Server.from_dict(state.extra["async"], ctx.device) if "async" in state.extra else Server()
    state = replace(state, extra={k: x for k, x in state.extra.items() if k != "async"})  # srv holds it
    loop = Virtual(ctx, mech, srv, Draws.of(cfg), signals)
    while state.round < fed.rounds:
        timer, loop.sent0, loop.handed = Timer(), comm.bytes_sent, 0
        loop.out = step(ctx, mech, srv, state, loop.draws, timer)
        v = loop.out.state.round
        end = body.after(loop, mech, rec, body.Made(loop.out.state, state, loop.out.work, timer,
                                                      f"at server step {v}"))
        if end.signame is not None:
            raise stop.Preempted(cfg.name, end.signame, cfg.run_dir, end.state.round)
        state = end.state
        if end.stopped is not None:
            return lifecycle.Ending(state, end.stopped, end.diverged)
    return lifecycle.Ending(state)


def with_server(ctx: Context, mech: privacy.Mechanism, srv: Server, state: ServerState, timer: Timer
                ) -> ServerState:
    """`state` ready to checkpoint (collective): the tasks in flight trained, so no base weights
    need saving (their spending was charged when they were handed out), and the server's state
    inside."""
    train_pending(ctx, mech, srv, timer)
    return replace(state, extra={**state.extra, "async": srv.to_dict()})


def _rows(ctx: Context, mech: privacy.Mechanism, out: Step, sampled: int, state: ServerState,
          reports: list[tuple[dict[str, float], int]], ev: lifecycle.Scores
          ) -> tuple[RoundRow, list[ClientRow]]:
    """A server step's rows (built on the rank that writes them): its row, one per update
    applied; the privacy metrics are those of `state`, the state checkpointed and kept."""
    v = out.state.round
    return _row(ctx, out, sampled, reports, ev, mech.metrics(state, v)), [
        ClientRow(v, t.cid, r.rank, len(ctx.shards[t.cid]), t.steps, r.loss, r.compute_s, t.speed,
                  t.finish - t.start, "ok", t.staleness(v)) for t, r in out.applied]


def _row(ctx: Context, out: Step, sampled: int, reports: list[tuple[dict[str, float], int]],
         ev: tuple[Any, Any, Any], privacy_metrics: dict[str, Any]) -> RoundRow:
    """One server step as a rounds.csv row: rank 0's phases, the updates applied, the clock."""
    cfg, v = ctx.cfg, out.state.round
    t0 = reports[0][0]
    taus = [t.staleness(v) for t, _ in out.applied]
    n = [len(ctx.shards[t.cid]) for t, _ in out.applied]
    now = max(t.finish for t, _ in out.applied)
    return RoundRow(
        round=v, algorithm=cfg.strategy.algorithm, model=cfg.model.name,
        aggregation=cfg.federation.aggregation,
        ranks=len(reports), clients=cfg.federation.num_clients, sampled=sampled,
        aggregated=len(out.applied), params=ctx.flat.numel, payload_bytes=ctx.flat.numel * 4,
        bytes_comm=int(sum(b for _, b in reports)),
        **phase_fields(t0),
        compute_max_s=max(s["compute"] for s, _ in reports), wait_max_s=max(s["wait"] for s, _ in reports),
        train_loss=float(np.average([r.loss for _, r in out.applied], weights=n)),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2], sim_round_s=now - out.start_s,
        mode=cfg.federation.mode, virtual_s=now, staleness_mean=float(np.mean(taus)), staleness_max=max(taus),
        **privacy_metrics,
    )
