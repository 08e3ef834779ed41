"""One federated round, the body every rank runs: place the round's clients (drawn with their
fates by the loop) on ranks, train this rank's share, hand the updates to the exchange and step
the server state. Which clients a rank trains, and every random draw, is decided by (run seed,
round, client id), never by the rank — so 1, 2 or 96 ranks give the same model.

`Context` is what every round needs, built once per process; `Context.train` is how every loop,
synchronous or asynchronous, trains one client. Outcomes are typed values (a
`ClientRow` per client, `RankReport`, `RoundOutcome`); the runner only builds, resumes, loops,
evaluates, logs and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import cache, client, config, data, models, participation, partition, seeds
from . import device as devices
from .metrics import ClientRow, RoundRow, Timer
from .strategies import ServerState, server_step
from .wire import placement
from .wire.aggregate import Update
from .wire.codec import PAYLOAD_DTYPES
from .wire.comm import Comm
from .wire.flat import FlatParams

if TYPE_CHECKING:
    from .privacy import Mechanism
    from .wire.exchange import Exchange


@dataclass(frozen=True)
class RankReport:
    """One rank's share of a round, gathered on every rank after it."""

    seconds: dict[str, float]  # Timer phases + round
    clients: list[ClientRow]  # what this rank's clients came to (clients.csv rows)
    bytes_sent: int


@dataclass(frozen=True)
class RoundOutcome:
    state: ServerState  # after the server step (every rank holds it)
    fates: list[participation.Fate]
    clients: list[ClientRow]  # this rank's
    aggregated: int  # clients in the aggregate
    skipped: bool  # too few survivors: weights kept


@dataclass
class Context:
    """Everything a round needs on this process (model, data, shards, comm), built once per
    process and handed to every round: a per-rank context, not the run itself."""

    cfg: config.RunConfig
    comm: Comm
    model: torch.nn.Module
    flat: FlatParams
    data: data.TextData
    shards: list[data.TextSplit]
    parts: list[np.ndarray]  # training-set indices of each client
    spec: models.ModelSpec  # model.name resolved once per run (tokenizer, data, model, export)
    costs: placement.CostModel = field(default_factory=placement.CostModel)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # model, buffers, server state

    @classmethod
    def build(cls, cfg: config.RunConfig, comm: Comm) -> Context:
        """The context of `cfg` on this process, on the device its `device` key names."""
        return cls.build_on(cfg, comm, devices.resolve(cfg.device))

    @classmethod
    def build_on(cls, cfg: config.RunConfig, comm: Comm, dev: torch.device) -> Context:
        """The context of `cfg` on this process, on `dev` (the `device` key, resolved once by the
        runner)."""
        spec = models.locate(cfg.model.name)
        tok = models.load_tokenizer(cfg.model, spec)
        vocab = models.preset_vocab(cfg.model, spec)
        td = data.load(cfg.data, tok, vocab_size=vocab, comm=comm)
        model = models.build(cfg.model, num_labels=td.num_labels, seed=cfg.seed, spec=spec).to(dev)
        if cfg.model.cache_features:  # clients train the part above the cached frozen prefix
            model, td = cache.attach(model, td, cfg.model, comm)
        parts = partition.partition(td.train.labels.cpu().numpy(), cfg.federation.num_clients,
                                    cfg.partition, cfg.seed)
        shards = [td.train.subset(torch.as_tensor(p)) for p in parts]
        return cls(cfg, comm, model, FlatParams(model, bind=True), td, shards, parts, spec, device=dev)

    def steps(self, cid: int) -> int:
        """Client `cid`'s full local steps (client.local_steps, or its epochs over its shard)."""
        return client.num_steps(len(self.shards[cid]), self.cfg.client)

    def place(self, clients: list[int]) -> list[list[int]]:
        """Client -> rank plan for this round (federation.placement)."""
        if self.balances:
            steps = [self.steps(c) for c in clients]
            extra = self.comm.bcast_obj(self.costs.per_client_steps())  # rank 0's fit: one plan everywhere
            return placement.balanced(clients, [s + extra for s in steps], self.comm.size)
        return placement.round_robin(clients, self.comm.size)

    @property
    def balances(self) -> bool:
        return self.cfg.federation.placement == "balanced" and self.comm.size > 1

    def observe(self, reports: list[RankReport]) -> None:
        """Feed every rank's busy seconds (compute + pack + other) to the placement cost model."""
        if not self.balances:
            return
        for rep in reports:
            t = rep.seconds
            self.costs.observe(sum(c.steps for c in rep.clients), len(rep.clients),
                               t["compute"] + t["pack"] + t["other"])

    def train(self, mech: Mechanism, cid: int, rnd: int, base: torch.Tensor, timer: Timer,
              fate: participation.Fate | None = None) -> tuple[client.ClientResult, bool]:
        """Client `cid`'s update for round `rnd` — the one way every loop trains a client (an
        asynchronous task from version v trains for v + 1): from `base`, with FedProx's pull
        toward it, its training seed (run seed, `rnd`, `cid`) and, under a round's `fate`, only
        the steps a mid-round dropout completes. Its new weights stay in the model, bounded by
        `mech`; returns what it came to and whether the update, before the bound, is finite
        (a round rejects one that is not)."""
        cfg, flat = self.cfg, self.flat
        flat.set(base)
        mu = cfg.client.mu
        penalty = client.prox_term(flat.params, flat.views(base), mu) if mu > 0 else None
        full = self.steps(cid)
        steps = full if fate is None else participation.steps_done(fate, full)
        ccfg = cfg.client if steps == full else replace(cfg.client, local_steps=steps)  # same steps
        with timer("compute"):
            res = mech.train(self.model, self.shards[cid], ccfg,
                             seeds.seed(cfg.seed, seeds.Stream.CLIENT, rnd, cid), cid, penalty)
        is_finite = participation.finite(flat.tensors)
        mech.bound(flat, base)
        return res, is_finite

    def evaluate(self, weights: torch.Tensor) -> tuple[float, float, float]:
        """(loss, accuracy, macro-F1) on the eval split, each rank scoring every size-th row."""
        self.flat.set(weights)
        n = self.data.num_labels
        rows = torch.arange(self.comm.rank, len(self.data.eval), self.comm.size)
        cm, loss_sum = client.confusion(self.model, self.data.eval.subset(rows), n)
        buf = torch.from_numpy(np.concatenate([cm.reshape(-1).astype(np.float64), [loss_sum]]))
        self.comm.allreduce(buf)
        buf = buf.cpu().numpy()
        cm = buf[:-1].reshape(n, n).round().astype(np.int64)
        acc, f1 = client.scores(cm)
        return float(buf[-1] / max(cm.sum(), 1)), acc, f1


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
    return RoundOutcome(mech.record(state, comm), fates, outcomes, aggregated, skipped)


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
        round_s=t0["round"], compute_s=t0["compute"], pack_s=t0["pack"], wait_s=t0["wait"],
        comm_s=t0["comm"], aggregate_s=t0["aggregate"], eval_s=t0["eval"],
        checkpoint_s=t0["checkpoint"], other_s=t0["other"], copy_s=t0["copy"],
        compute_max_s=max(rep.seconds["compute"] for rep in reports),
        wait_max_s=max(rep.seconds["wait"] for rep in reports),
        train_loss=sum(v * n for v, n in losses) / w if w else float("nan"),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2],
        dropped=n_out["dropped"] + sum(f.drop == "before" for f in out.fates), late=n_out["late"],
        rejected=n_out["rejected"], skipped=out.skipped, sim_round_s=sim_round, sim_wait_s=sim_wait,
        **privacy_metrics,
    )
