"""FedAsync (Xie et al. 2019, "Asynchronous Federated Optimization", Algorithm 1): every
arriving client model is mixed into the global one at once,

    α_t = α·s(t − τ),      x_t = (1 − α_t)·x_{t−1} + α_t·x_client

with t − τ the staleness (server versions since the client's model). The mixing replaces the
server optimizer: `strategy.algorithm` plays no part.
"""

from __future__ import annotations

import torch

from ..config import StrategyConfig
from . import staleness
from .state import ServerState


def step(state: ServerState, x_client: torch.Tensor, tau: int, cfg: StrategyConfig) -> ServerState:
    """One arrival applied; inputs untouched."""
    a = cfg.async_alpha * staleness.of(tau, cfg)
    return state.next((1 - a) * state.weights + a * x_client.float(), state.opt_state)
