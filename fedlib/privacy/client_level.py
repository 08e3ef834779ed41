"""Client-level DP-FedAvg (McMahan et al. 2018): each client's update is clipped to L2 norm C
and weighted 1; the sum over the round gets Gaussian noise N(0, (σC)²) once, after the
cross-rank reduce, from a generator seeded by (seed, round) so every rank adds the same noise;
the average divides by the expected number of clients m (a fixed denominator keeps the
sensitivity C/m whoever drops out). The accountant sees one step per round at sampling rate
q = m / num_clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import RunConfig
from ..wire.aggregate import Aggregate
from . import Mechanism, accounting

if TYPE_CHECKING:
    from ..strategies import ServerState
    from ..wire.flat import FlatParams


def clip_(flat: FlatParams, base: torch.Tensor, c: float) -> float:
    """Scale the model's update (weights - base) in place to norm <= c; returns the old norm."""
    with torch.no_grad():
        views = flat.views(base)
        norm = float(torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(flat.params, views, strict=True))))
        scale = min(1.0, c / max(norm, 1e-12))
        if scale < 1.0:
            for p, b in zip(flat.params, views, strict=True):
                p.sub_(b).mul_(scale).add_(b)
    return norm


class ClientLevel(Mechanism):
    def __init__(self, cfg: RunConfig) -> None:
        p = cfg.privacy
        self.cfg, self.p = cfg, p
        self.m = cfg.clients_per_round
        self.q = self.m / cfg.federation.num_clients
        self.sigma = p.noise_multiplier or accounting.noise_for(
            p.target_epsilon, p.delta, self.q, cfg.federation.rounds, p.accountant)

    def epsilon(self, rounds: int) -> float:
        return accounting.epsilon([(self.sigma, self.q, rounds)], self.p.delta, self.p.accountant)

    def admit(self, state: ServerState, rnd: int) -> str | None:
        budget = self.p.epsilon_budget
        if budget is not None and (eps := self.epsilon(rnd)) > budget:
            return (f"privacy budget: round {rnd} would bring epsilon to {eps:.3f} > "
                    f"privacy.epsilon_budget={budget} (delta={self.p.delta}); stopped after round {rnd - 1}")
        return None

    def weight(self, num_samples: int) -> float:
        return 1.0

    def bound(self, flat: FlatParams, base: torch.Tensor) -> None:
        clip_(flat, base, self.p.clip)

    def finish(self, agg: Aggregate, rnd: int) -> Aggregate:
        return noised(agg, self.sigma * self.p.clip, self.m, seed=(self.cfg.seed, rnd))

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(rnd)}


def noised(agg: Aggregate, std: float, denominator: int, seed: tuple[int, int]) -> Aggregate:
    """The aggregate with N(0, std²) added to its sum and the fixed `denominator` as its weight."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([*seed, 0xD9]).generate_state(1)[0]))
    # drawn on the host and moved: the same noise whatever device the aggregate lives on
    noise = torch.randn(agg.numel, generator=gen).to(agg.buf.device)
    return agg.replace(total=agg.total + std * noise, weight=float(denominator))
