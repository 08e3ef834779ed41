"""FedAvg (McMahan et al., 2017): the sample-weighted mean of client updates, applied with a
server learning rate (1.0 is plain FedAvg). FedProx shares this server rule; its difference
is the client's proximal term (`client.prox_term`).
"""

from __future__ import annotations

import torch

from .state import ServerState


def step(state: ServerState, delta: torch.Tensor, lr: float) -> ServerState:
    """w <- w + lr * delta."""
    return state.next(state.weights + lr * delta, state.opt_state)
