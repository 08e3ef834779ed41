"""FedAvgM (Hsu et al., 2019): FedAvg with server momentum,
    v_t = β·v_{t−1} + Δ_t,   x_{t+1} = x_t + η·v_t,   v_{−1} = 0,
Δ_t the average client update. This is torch's SGD momentum (dampening 0) on the
pseudo-gradient g = −Δ, with its buffer negated; written out so the state is one tensor.
"""

from __future__ import annotations

import torch

from ..config import StrategyConfig
from .state import ServerState


def step(state: ServerState, delta: torch.Tensor, cfg: StrategyConfig) -> ServerState:
    d = delta.detach().float()
    v = cfg.momentum * state.opt_state["v"] + d if state.opt_state else d
    return state.next(state.weights + cfg.server_lr * v, {"v": v})
