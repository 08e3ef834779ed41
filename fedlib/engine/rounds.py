"""One federated round, the body every rank runs: place the round's clients (drawn with their
fates by the loop) on ranks, train this rank's share, hand the updates to the exchange and step
the server state. Which clients a rank trains, and every random draw, is decided by (run seed,
round, client id), never by the rank — so 1, 2 or 96 ranks give the same model.

What every round needs is `context.Context`, built once per process. Outcomes are typed values
(a `ClientRow` per client, `RankReport`, `RoundOutcome`); the runner only builds, resumes, loops,
evaluates, logs and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from ..record.metrics import ClientRow, RoundRow, Timer, phase_fields
from ..sim import participation
from ..strategies import ServerState, server_step
from ..wire.aggregate import Update
from ..wire.codec import PAYLOAD_DTYPES
from .context import Context

if TYPE_CHECKING:
    from ..privacy import Mechanism
    from ..wire.exchange import Exchange


@dataclass(frozen=True)
class RankReport:
    """One rank's share of a round, gathered on every rank after it."""

    seconds: dict[str, float]  # Timer phases + round
    clients: list[ClientRow]  # what this rank's clients came to (clients.csv rows)
    bytes_sent: int


@dataclass(frozen=True)
class RoundOutcome:
    state: ServerState  # after the server step (every rank holds it); its training not yet charged
    fates: list[participation.Fate]
    clients: list[ClientRow]  # this rank's
    aggregated: int  # clients in the aggregate
    skipped: bool  # too few survivors: weights kept


def play(ctx: Context, mech: Mechanism, ex: Exchange, state: ServerState, rnd: int,
         fates: list[participation.Fate], timer: Timer) -> RoundOutcome:
    """Round `rnd` from `state`, its sampled clients' `fates` drawn by the caller
    (`participation.fates`): every rank returns the same new state."""
    cfg, comm = ctx.cfg, ctx.comm
    plan = ctx.place([f.client for f in fates if f.drop != "before"])
    fate = {f.client: f for f in fates}
    ex.begin(plan)
    global_w = state.weights
    outcomes = []
    for cid in plan[comm.rank]:
        f = fate[cid]
        res, is_finite = ctx.train(mech, cid, rnd, global_w, timer, f)
        sim_s = res.compute_s * f.speed
        out = participation.outcome(f, participation.late(cfg.participation, f, sim_s, res.steps), is_finite)
        outcomes.append(ClientRow(rnd, res.client_id, comm.rank, res.num_samples, res.steps, res.loss,
                                  res.compute_s, f.speed, sim_s, out))
        if out == "ok":
            ex.submit(Update(cid, rnd, ctx.flat, global_w, mech.weight(res.num_samples)), timer)
        else:
            ex.submit(None, timer)
    agg = ex.finish(timer)
    aggregated, skipped = 0, False
    if agg is not None:
        aggregated = agg.count
        skipped = not mech.always_releases and aggregated < cfg.participation.min_clients
        with timer("aggregate"):
            if skipped:  # too few survivors: keep the weights, count the round
                state = replace(state, round=rnd)
            else:
                state = server_step(state, mech.finish(agg, rnd).mean(), cfg.strategy)
    if not ex.server_on_every_rank:
        received = ex.distribute(state.weights, timer)
        state = state if comm.rank == 0 else replace(state, weights=received, round=rnd)
    return RoundOutcome(state, fates, outcomes, aggregated, skipped)


def round_row(ctx: Context, rnd: int, out: RoundOutcome, reports: list[RankReport],
              ev: tuple[Any, Any, Any], privacy_metrics: dict[str, float]) -> RoundRow:
    """The tidy rounds.csv row: rank 0's phase seconds, maxima over ranks, outcomes over clients."""
    cfg = ctx.cfg
    t0 = reports[0].seconds
    trained = [c for rep in reports for c in rep.clients]
    kept = [c for c in trained if c.outcome == "ok"]
    losses = [(c.loss, c.num_samples) for c in (kept or trained)]
    w = sum(n for _, n in losses)
    n_out = {k: sum(c.outcome == k for c in trained) for k in ("dropped", "late", "rejected")}
    sim_round, sim_wait = participation.simulated_times(
        [c.sim_s for c in kept], cfg.participation.deadline_s, n_out["late"] > 0)
    return RoundRow(
        round=rnd, algorithm=cfg.strategy.algorithm, model=cfg.model.name,
        aggregation=cfg.federation.aggregation, ranks=len(reports), clients=cfg.federation.num_clients,
        sampled=len(out.fates), aggregated=out.aggregated, params=ctx.flat.numel,
        payload_bytes=ctx.flat.numel * torch.finfo(PAYLOAD_DTYPES[cfg.federation.payload_dtype]).bits // 8,
        bytes_comm=int(sum(rep.bytes_sent for rep in reports)),
        **phase_fields(t0), compute_max_s=max(rep.seconds["compute"] for rep in reports),
        wait_max_s=max(rep.seconds["wait"] for rep in reports),
        train_loss=sum(v * n for v, n in losses) / w if w else float("nan"),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2],
        dropped=n_out["dropped"] + sum(f.drop == "before" for f in out.fates), late=n_out["late"],
        rejected=n_out["rejected"], skipped=out.skipped, sim_round_s=sim_round, sim_wait_s=sim_wait,
        **privacy_metrics,
    )
