"""What every round needs on this process — model, data, shards, comm — built once and handed
to every loop: `Context.train` is how every loop, synchronous or asynchronous, trains one client
(load the weights, FedProx's pull, the fate's steps, the seed of (run seed, round, client), a
finiteness check), `Context.place` puts clients on ranks and `Context.evaluate` scores weights on
every rank's share of the evaluation split."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import config, seeds
from ..hpc import devices
from ..learn import data, frozen, models
from ..record.metrics import Timer
from ..sim import client, participation, partition
from ..wire import placement
from ..wire.comm import Comm
from ..wire.flat import FlatParams, finite

if TYPE_CHECKING:
    from ..privacy import Mechanism
    from .rounds import RankReport


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
            model, td = frozen.attach(model, td, cfg.model, comm)
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
        is_finite = finite(flat.tensors)
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
