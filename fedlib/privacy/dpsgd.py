"""Sample-level DP-SGD on every client with Opacus: per-example gradients (GradSampleModule),
clipping and Gaussian noise (DPOptimizer), Poisson-sampled batches; batches, dropout masks and
noise are three streams of the client's (seed, round, client) training seed (fedlib.seeds).
With ``privacy.secure_noise`` the noise generator is seeded from OS entropy per client round,
Opacus's ``secure_mode`` (noise robust to floating-point attacks) is on, and the Poisson
batches are drawn from OS entropy (`seeds.os_uniform`): the reported ε relies on amplification
by subsampling, which holds only while the sample is secret (Opacus's secure mode samples from
its secure generator too).
An empty Poisson batch is still a step: the noise alone (`noise_only_step`), as the accountant
assumes. ``privacy.epsilon_budget`` stops the run before a round would take any of its clients past it.
Each client's spending is its own Opacus history — (σ, q, steps) per round it took
part in — kept in ``ServerState.extra["dp_sgd"]`` so it is checkpointed and, being gathered
from all ranks every round, the same whatever rank trained the client.

Transformers note: BERT-style models index their position embeddings with a (1, L) buffer,
which gives Opacus a batch dimension of 1 and breaks per-sample gradients; we pass
``position_ids`` expanded to the batch instead.
"""

from __future__ import annotations

import inspect
import secrets
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn

from .. import seeds
from ..config import ClientConfig, ConfigError, RunConfig
from ..hpc import devices
from ..seeds import Stream
from ..sim import client
from . import accounting
from .mechanism import Mechanism, Work

# Opacus's hooks on the embedding layer fire with no input requiring grad; harmless.
warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)

if TYPE_CHECKING:
    from ..learn.data import TextSplit
    from ..strategies import ServerState


class SampleLevel(Mechanism):
    key = "dp_sgd"

    def __init__(self, cfg: RunConfig, shard_sizes: list[int], model: nn.Module) -> None:
        self.cfg, self.p = cfg, cfg.privacy
        self.sizes = shard_sizes
        check_delta(self.p.delta, max(shard_sizes, default=0))
        self.gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.positions = "position_ids" in inspect.signature(model.forward).parameters
        self._sigma: dict[int, float] = {}
        self._spent: dict[int, list[list[float]]] = {}  # each client's history when the run started
        self._left = cfg.federation.rounds  # rounds still to run

    def plan(self, state: ServerState) -> None:
        """Remember each client's spending so far: a resume (perhaps to more rounds) plans the
        clients' remaining noise against what they already spent (`sigma_q`)."""
        self._spent = {int(c): h for c, h in state.extra.get(self.key, {}).items()}
        self._left = self.cfg.federation.rounds - state.round
        self._sigma.clear()
        for cid in self._spent:  # only a client that already spent can be over budget: refuse now
            self.sigma_q(cid)

    def sigma_q(self, cid: int) -> tuple[float, float]:
        """The client's noise multiplier and Poisson rate. Under target_epsilon σ is planned as if
        the client took part in every remaining round (an upper bound on its spending): the
        fresh plan for all rounds when that still fits on top of its history (so an unchanged
        resume equals the uninterrupted run), else the σ that spends only what is left."""
        n, c = self.sizes[cid], self.cfg.client
        q = min(1.0, c.batch_size / n)
        if cid not in self._sigma:
            self._sigma[cid] = self.p.noise_multiplier or self._planned(cid, q, client.num_steps(n, c))
        return self._sigma[cid], q

    def _planned(self, cid: int, q: float, steps_per_round: int) -> float:
        p, hist = self.p, self._spent.get(cid, [])
        left = steps_per_round * self._left
        sigma = hist[-1][0] if hist else accounting.noise_for(
            p.target_epsilon, p.delta, q, steps_per_round * self.cfg.federation.rounds, p.accountant)
        if accounting.epsilon([*hist, (sigma, q, left)], p.delta, p.accountant) <= p.target_epsilon:
            return sigma
        try:
            return accounting.noise_after(hist, p.target_epsilon, p.delta, q, left, p.accountant)
        except ValueError as e:
            raise ConfigError(f"privacy.target_epsilon={p.target_epsilon}: client {cid} cannot train "
                              f"{left} more steps within the budget: {e}") from None

    def admit(self, state: ServerState, rnd: int, work: Work) -> str | None:
        """privacy.epsilon_budget: stop before a version would take any client it may train past
        the budget. A round's clients and their steps are fixed by its fates, drawn before anyone
        trains (seeded by round and client), so this checks exactly the spending the round would
        add; an asynchronous version may hand every client one task, so that is what it checks."""
        budget = self.p.epsilon_budget
        if budget is None:
            return None
        hist, memo = state.extra.get(self.key, {}), {}
        for cid, steps in work:
            sigma, q = self.sigma_q(cid)
            spent = tuple(map(tuple, hist.get(cid, [])))
            if (k := (spent, sigma, q, steps)) not in memo:  # equal shards share their answer
                memo[k] = accounting.epsilon([*spent, (sigma, q, steps)], self.p.delta, self.p.accountant)
            if memo[k] > budget:
                return (f"privacy budget: round {rnd} would bring client {cid}'s epsilon to "
                        f"{memo[k]:.3f} > privacy.epsilon_budget={budget} (delta={self.p.delta}); "
                        f"stopped after round {rnd - 1}")
        return None

    def train(self, model: nn.Module, shard: TextSplit, cfg: ClientConfig, seed: int, cid: int,
              penalty: Any = None) -> client.ClientResult:
        t0 = time.perf_counter()
        sigma, q = self.sigma_q(cid)
        gen = seeds.generator(seed, Stream.BATCHES)  # Poisson sampling on the host: same rows on any device
        n = len(shard)
        dropout_seed = seeds.seed(seed, Stream.DROPOUT)
        noise_seed = secrets.randbits(64) if self.p.secure_noise else seeds.seed(seed, Stream.SAMPLE_NOISE)
        dev = client.device_of(model)
        devices.seed_dropout(dev, dropout_seed)  # dropout masks
        noise = devices.generator(dev, noise_seed)  # drawn on dev
        params = [p for p in model.parameters() if p.requires_grad]
        opt = DPOptimizer(client.make_optimizer(params, replace(cfg, max_grad_norm=None)),
                          noise_multiplier=sigma, max_grad_norm=self.p.max_grad_norm,
                          expected_batch_size=cfg.batch_size,
                          generator=noise, secure_mode=self.p.secure_noise)
        model.train()
        steps = client.num_steps(len(shard), cfg)
        losses = []
        for _ in range(steps):
            u = torch.from_numpy(seeds.os_uniform(n)) if self.p.secure_noise else torch.rand(n, generator=gen)
            idx = torch.nonzero(u < q).flatten()  # secure_noise: a secret sample (amplification assumes it)
            if len(idx) == 0:  # P = (1-q)^n: the sampled Gaussian mechanism still releases noise
                noise_only_step(opt, params)
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
        return client.ClientResult(cid, len(shard), steps, float(np.mean(losses)) if losses else float("nan"),
                                   time.perf_counter() - t0)

    def spend(self, state: ServerState, work: Work, ahead: bool = False) -> ServerState:
        """Each client in `work` spent (σ, q, steps): known from the config and the work alone,
        so the server charges it without hearing from the rank that trained (the wall clock's
        workers never report it)."""
        hist = dict(state.extra.get(self.key, {}))
        for cid, steps in work:
            sigma, q = self.sigma_q(cid)
            hist[cid] = accounting.merge(hist.get(cid, []), sigma, q, steps)
        return replace(state, extra={**state.extra, self.key: hist})

    def client_epsilon(self, state: ServerState, cid: int) -> float:
        hist = state.extra.get(self.key, {}).get(cid, [])
        return accounting.epsilon(hist, self.p.delta, self.p.accountant)

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        """Max and mean ε over every client that has trained so far (a client's spending stays
        when it sits a round out, so eps_max never goes down)."""
        eps = [self.client_epsilon(state, c) for c in state.extra.get(self.key, {})] or [0.0]
        return {"eps_max": max(eps), "eps_mean": float(np.mean(eps))}


def check_delta(delta: float, n: int) -> None:
    """DP-SGD protects one example among a client's n: δ above 1/n allows a mechanism that
    publishes a random example outright, so δ must sit well below it, 1/(10·n) for the largest
    shard n (as client-level DP asks of its N clients); shard sizes are known once the data is
    partitioned, so this is checked here, before the run touches its folder."""
    if n > 0 and delta > 1 / (10 * n):
        raise ConfigError(f"privacy.delta: is {delta:g}, but DP-SGD over client shards of up to n={n} "
                          f"examples needs delta <= 1/(10·n) = {1 / (10 * n):.3g}")


def noise_only_step(opt: DPOptimizer, params: list[nn.Parameter]) -> None:
    """The step of an empty Poisson batch: no example, so the clipped sum is zero and the update
    is the noise N(0, (σC)²) / expected batch size alone. The accountant counts every step as
    one release of the sampled Gaussian mechanism, so skipping it would report ε for noise
    that was never added. Opacus treats a zero-length per-sample gradient as an empty batch."""
    opt.zero_grad(set_to_none=True)
    for p in params:
        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
    opt.step()

