"""Sample-level DP-SGD on every client with Opacus: per-example gradients (GradSampleModule),
clipping and Gaussian noise (DPOptimizer), Poisson-sampled batches seeded by (seed, round,
client). Each client's spending is its own Opacus history — (σ, q, steps) per round it took
part in — kept in ``ServerState.extra["dp_sgd"]`` so it is checkpointed and, being gathered
from all ranks every round, the same whatever rank trained the client.

Transformers note: BERT-style models index their position embeddings with a (1, L) buffer,
which gives Opacus a batch dimension of 1 and breaks per-sample gradients; we pass
``position_ids`` expanded to the batch instead.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from .. import client, device
from ..config import ClientConfig, RunConfig
from . import Mechanism, accounting

# Opacus's hooks on the embedding layer fire with no input requiring grad; harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)

if TYPE_CHECKING:
    from ..data import TextSplit
    from ..strategies import ServerState
    from ..wire.comm import Comm


class SampleLevel(Mechanism):
    def __init__(self, cfg: RunConfig, shard_sizes: list[int], model: nn.Module) -> None:
        self.cfg, self.p = cfg, cfg.privacy
        self.sizes = shard_sizes
        self.gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.positions = "position_ids" in inspect.signature(model.forward).parameters
        self.pending: list[tuple[int, float, float, int]] = []
        self.round_clients: list[int] = []
        self._sigma: dict[int, float] = {}

    def sigma_q(self, cid: int) -> tuple[float, float]:
        n, c = self.sizes[cid], self.cfg.client
        q = min(1.0, c.batch_size / n)
        if cid not in self._sigma:
            steps = client.num_steps(n, c) * self.cfg.federation.rounds  # if it took part every round
            self._sigma[cid] = self.p.noise_multiplier or accounting.noise_for(
                self.p.target_epsilon, self.p.delta, q, steps, self.p.accountant)
        return self._sigma[cid], q

    def train(self, model: nn.Module, shard: TextSplit, cfg: ClientConfig, seed: int, cid: int,
              penalty: Any = None) -> client.ClientResult:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)  # Poisson sampling on the host: same rows on any device
        dev = client.device_of(model)
        sigma, q = self.sigma_q(cid)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = DPOptimizer(client.make_optimizer(params, replace(cfg, max_grad_norm=None)),
                          noise_multiplier=sigma, max_grad_norm=self.p.max_grad_norm,
                          expected_batch_size=cfg.batch_size,
                          generator=device.generator(dev, seed ^ 0x5EED))  # noise drawn on dev
        model.train()
        steps = client.num_steps(len(shard), cfg)
        losses = []
        for _ in range(steps):
            idx = torch.nonzero(torch.rand(len(shard), generator=gen) < q).flatten()
            if len(idx) == 0:  # P = (1-q)^n, negligible for real shards; the step is still counted
                continue
            batch = client.on(shard.batch(idx), dev)
            if self.positions:
                b, length = batch["input_ids"].shape
                batch["position_ids"] = torch.arange(length, device=dev).expand(b, length)
            loss = self.gsm(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach().cpu()))
        opt.zero_grad(set_to_none=True)
        self.pending.append((cid, sigma, q, steps))
        return client.ClientResult(cid, len(shard), steps, float(np.mean(losses)) if losses else float("nan"),
                                   time.perf_counter() - t0)

    def record(self, state: ServerState, comm: Comm) -> ServerState:
        spent = [r for part in comm.allgather(self.pending) for r in part]
        self.pending = []
        hist = dict(state.extra.get("dp_sgd", {}))
        for cid, sigma, q, steps in spent:
            hist[cid] = accounting.merge(hist.get(cid, []), sigma, q, steps)
        self.round_clients = sorted(cid for cid, *_ in spent)
        return replace(state, extra={**state.extra, "dp_sgd": hist})

    def client_epsilon(self, state: ServerState, cid: int) -> float:
        hist = state.extra.get("dp_sgd", {}).get(cid, [])
        return accounting.epsilon(hist, self.p.delta, self.p.accountant)

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        eps = [self.client_epsilon(state, c) for c in self.round_clients] or [0.0]
        return {"eps_max": max(eps), "eps_mean": float(np.mean(eps))}
