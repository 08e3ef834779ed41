"""Client-level DP-FedAvg (McMahan et al. 2018).

- Sampling: each client joins a round independently with probability q = m / num_clients
  (Poisson sampling, fedlib.sim.participation.sample_clients), the sampling Opacus' RDP/PRV
  accountants assume; the number of clients varies per round.
- Each client's update is clipped to L2 norm C and weighted 1; the sum over the round gets
  Gaussian noise N(0, (σC)²) once, after the cross-rank reduce, from a generator seeded by
  (seed, round) (fedlib.seeds) so every rank adds the same noise (privacy.secure_noise: from a
  root of OS entropy shared by the ranks, with Opacus's secure-mode safeguard against
  floating-point attacks, `gaussian`); the average divides by the
  *expected* number of clients m = q·N, a fixed denominator that keeps the sensitivity C/m
  whoever is sampled or drops out.
- Every round releases its noised sum, even when no client was sampled or survived (then the
  release is noise / m): skipping a round because few clients came would reveal the count,
  which the accountant does not cover. So every round is one accountant step at (σ, q).
- Spending is an Opacus history [[σ, q, rounds], ...] in ``ServerState.extra["client_dp"]``;
  ε is its composition. On resume under ``target_epsilon``, the remaining rounds get the σ
  that spends only the remaining budget (the last σ when it still fits).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .. import seeds
from ..config import ConfigError, RunConfig
from ..seeds import Stream
from ..wire.aggregate import Aggregate
from . import accounting
from .mechanism import Mechanism, Work

if TYPE_CHECKING:
    from ..strategies import ServerState
    from ..wire.comm import Comm
    from ..wire.flat import FlatParams

KEY = "client_dp"


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
    always_releases = True
    key = KEY

    def __init__(self, cfg: RunConfig, comm: Comm) -> None:
        p = cfg.privacy
        self.cfg, self.p = cfg, p
        self.q = cfg.clients_per_round / cfg.federation.num_clients
        self.m = self.q * cfg.federation.num_clients
        self.sigma = p.noise_multiplier
        # secure_noise: one OS-entropy root per run, shared by the ranks that all add the noise
        self.root = (comm.bcast_obj(seeds.secure_entropy() if comm.rank == 0 else None)
                     if p.secure_noise else cfg.seed)

    @staticmethod
    def history(state: ServerState) -> list[list[float]]:
        return list(state.extra.get(KEY, []))

    def plan(self, state: ServerState) -> None:
        p, hist = self.p, self.history(state)
        if p.target_epsilon is None:
            return
        remaining = self.cfg.federation.rounds - state.round
        if remaining <= 0:
            return
        last = hist[-1][0] if hist else None
        if last is not None and accounting.epsilon(
                [*hist, (last, self.q, remaining)], p.delta, p.accountant) <= p.target_epsilon:
            self.sigma = last  # the plan still fits (e.g. an unchanged resume): keep it
            return
        try:
            self.sigma = accounting.noise_after(hist, p.target_epsilon, p.delta, self.q, remaining,
                                                p.accountant)
        except ValueError as e:
            raise ConfigError(
                f"privacy.target_epsilon={p.target_epsilon}: the checkpoint's {state.round} rounds "
                f"cannot be followed by {remaining} more (federation.rounds="
                f"{self.cfg.federation.rounds}) within the budget: {e}") from None

    def epsilon(self, history: accounting.History) -> float:
        return accounting.epsilon(history, self.p.delta, self.p.accountant)

    def admit(self, state: ServerState, rnd: int, work: Work) -> str | None:
        budget = self.p.epsilon_budget
        if budget is not None and (
                eps := self.epsilon([*self.history(state), (self.sigma, self.q, 1)])) > budget:
            return (f"privacy budget: round {rnd} would bring epsilon to {eps:.3f} > "
                    f"privacy.epsilon_budget={budget} (delta={self.p.delta}); stopped after round {rnd - 1}")
        return None

    def weight(self, num_samples: int) -> float:
        return 1.0

    def bound(self, flat: FlatParams, base: torch.Tensor) -> None:
        clip_(flat, base, self.p.clip)

    def finish(self, agg: Aggregate, rnd: int) -> Aggregate:
        return noised(agg, self.sigma * self.p.clip, self.m,
                      seeds.generator(self.root, Stream.CLIENT_NOISE, rnd), self.p.secure_noise)

    def spend(self, state: ServerState, work: Work, ahead: bool = False) -> ServerState:
        """One release of the noised sum per round, whoever trained (`work` is not read)."""
        if ahead:  # no release yet
            return state
        hist = accounting.merge(self.history(state), self.sigma, self.q, 1)
        return replace(state, extra={**state.extra, KEY: hist})

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(self.history(state)), "noise_multiplier": self.sigma,
                "sample_rate": self.q}


def gaussian(n: int, generator: torch.Generator, secure: bool = False) -> torch.Tensor:
    """`n` standard normal draws. `secure`: Opacus's secure-mode safeguard against floating-point
    attacks on the Gaussian mechanism (Holohan & Braghin 2021, §5.1, with n = 2): the first draw
    is discarded and each value is the sum of four draws over 2 — still N(0, 1), but its low
    bits no longer reveal the draw it was made from."""
    if not secure:
        return torch.randn(n, generator=generator)
    torch.randn(1, generator=generator)  # thrown away, as Opacus's secure mode does
    return sum((torch.randn(n, generator=generator) for _ in range(4)), torch.zeros(n)) / 2


def noised(agg: Aggregate, std: float, denominator: float, generator: torch.Generator,
           secure: bool = False) -> Aggregate:
    """The aggregate with N(0, std²) added to its sum and the fixed `denominator` as its weight
    (`secure`: the noise with Opacus's secure-mode safeguard, `gaussian`)."""
    # drawn on the host and moved: the same noise whatever device the aggregate lives on
    noise = gaussian(agg.numel, generator, secure).to(agg.buf.device)
    return agg.replace(total=agg.total + std * noise, weight=float(denominator))
