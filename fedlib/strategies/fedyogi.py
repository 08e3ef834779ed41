"""FedYogi (Reddi et al., 2021): Adam's step with Yogi's additive second moment,
v <- v - (1 - beta2) * g^2 * sign(v - g^2), which grows v more slowly than Adam when updates
are large. Bias correction as in torch's Adam, so FedYogi and FedAdam differ only in v.
"""

from __future__ import annotations

import torch

from ..config import StrategyConfig
from .state import ServerState


def step(state: ServerState, delta: torch.Tensor, cfg: StrategyConfig) -> ServerState:
    g = -delta.float()
    t = int(state.opt_state.get("t", 0)) + 1
    m = state.opt_state.get("m", torch.zeros_like(g))
    v = state.opt_state.get("v", torch.zeros_like(g))
    m = cfg.beta1 * m + (1 - cfg.beta1) * g
    g2 = g * g
    v = v - (1 - cfg.beta2) * g2 * torch.sign(v - g2)
    m_hat = m / (1 - cfg.beta1**t)
    v_hat = v / (1 - cfg.beta2**t)
    w = state.weights - cfg.server_lr * m_hat / (v_hat.sqrt() + cfg.tau)
    return state.next(w, {"t": t, "m": m, "v": v})
