"""FedAvg (McMahan et al., 2017): the sample-weighted mean of client updates, applied with a
server learning rate (1.0 is plain FedAvg). FedProx shares this server rule; its difference
is the client's proximal term (`client.prox_term`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .state import ServerState


def weighted_average(updates: Sequence[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """sum_k n_k * delta_k / sum_k n_k for (n_k, delta_k) pairs."""
    total = sum(n for n, _ in updates)
    if total <= 0:
        raise ValueError("weighted_average needs a positive total weight")
    out = torch.zeros_like(updates[0][1], dtype=torch.float32)
    for n, delta in updates:
        out.add_(delta.float(), alpha=n / total)
    return out


def step(state: ServerState, delta: torch.Tensor, lr: float) -> ServerState:
    """w <- w + lr * delta."""
    return state.next(state.weights + lr * delta, state.opt_state)
