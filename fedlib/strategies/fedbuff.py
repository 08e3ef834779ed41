"""FedBuff (Nguyen et al., AISTATS 2022, "Federated Learning with Buffered Asynchronous
Aggregation", Algorithm 1): the server keeps a buffer of arriving client updates and, once it
holds K of them, applies their staleness-weighted mean

    Δ̄ = Σ_k w_k·s(τ_k)·Δ_k / Σ_k w_k,      Δ_k = x_client,k − x_{version it trained from}

with the server optimizer of `strategy` (FedAvg: x ← x + η·Δ̄; FedAdam, FedYogi, … step on Δ̄
as on a synchronous round's mean). The paper weighs clients equally (w_k = 1, so Δ̄ is
(1/K)·Σ s(τ_k)·Δ_k); w_k = the client's sample count here, as in synchronous FedAvg, which it
reduces to when every τ is 0 and s is constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import StrategyConfig
from . import server_step, staleness
from .state import ServerState


@dataclass(frozen=True)
class Arrival:
    """One buffered client update: its weight, staleness τ and Δ (client minus its base)."""

    weight: float
    tau: int
    delta: torch.Tensor


def buffered_mean(arrivals: Sequence[Arrival], cfg: StrategyConfig) -> torch.Tensor:
    """Σ w_k·s(τ_k)·Δ_k / Σ w_k."""
    total = sum(a.weight for a in arrivals)
    if not arrivals or total <= 0:
        raise ValueError("a FedBuff step needs arrivals with a positive total weight")
    out = torch.zeros_like(arrivals[0].delta, dtype=torch.float32)
    for a in arrivals:
        out.add_(a.delta.float(), alpha=a.weight * staleness.of(a.tau, cfg) / total)
    return out


def step(state: ServerState, arrivals: Sequence[Arrival], cfg: StrategyConfig) -> ServerState:
    """The server step on a full buffer; inputs untouched."""
    return server_step(state, buffered_mean(arrivals, cfg), cfg)
