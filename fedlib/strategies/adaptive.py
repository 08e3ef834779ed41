"""FedAdagrad, FedAdam, FedYogi: Reddi et al. (2021), "Adaptive Federated Optimization",
Algorithm 2, as written in the paper.

With Δ_t the average client update (x_client − x_global):
    m_t = β1·m_{t−1} + (1 − β1)·Δ_t                       (all three, FedAdagrad included)
    v_t = SECOND_MOMENT[algorithm](v_{t−1}, Δ_t², β2)      (the only difference between them)
    x_{t+1} = x_t + η·m_t / (√v_t + τ)
with m_{−1} = 0, v_{−1} = τ² and no bias correction, so a server learning rate tuned in the
paper means the same here. torch's Adam and Adagrad are different algorithms (bias-corrected,
v_0 = 0, no momentum in Adagrad) whose first step is several times the paper's.

``strategy.bias_correction: true`` (fedadam/fedyogi only) scales the step by
√(1 − β2^t) / (1 − β1^t), Kingma & Ba's (2015) efficient form of Adam's bias correction, as
Flower's FedAdam does; t counts server steps from 1. v still starts at τ² (a β2^t·τ² term,
negligible next to Δ² for the usual τ). The state (t, m, v) is plain tensors in
``ServerState.opt_state``, so a checkpoint saves it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import StrategyConfig
from .state import ServerState

SecondMoment = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (v, Δ², β2) -> v

SECOND_MOMENT: dict[str, SecondMoment] = {
    "fedadagrad": lambda v, d2, b2: v + d2,
    "fedadam": lambda v, d2, b2: b2 * v + (1 - b2) * d2,
    "fedyogi": lambda v, d2, b2: v - (1 - b2) * d2 * torch.sign(v - d2),
}

KEYS = frozenset({"t", "m", "v"})


def step(state: ServerState, delta: torch.Tensor, cfg: StrategyConfig) -> ServerState:
    """One server step of Algorithm 2 on the average update `delta`; inputs untouched."""
    d = delta.detach().float()
    opt = state.opt_state
    if opt and set(opt) != KEYS:
        raise ValueError(f"server optimizer state has keys {sorted(opt)}, expected {sorted(KEYS)} "
                         f"(a checkpoint from another algorithm or an older fedlib?)")
    t = int(opt.get("t", 0)) + 1
    m = opt["m"] if opt else torch.zeros_like(d)
    v = opt["v"] if opt else torch.full_like(d, cfg.tau**2)
    m = cfg.beta1 * m + (1 - cfg.beta1) * d
    v = SECOND_MOMENT[cfg.algorithm](v, d * d, cfg.beta2)
    lr = cfg.server_lr
    if cfg.bias_correction:
        lr *= math.sqrt(1 - cfg.beta2**t) / (1 - cfg.beta1**t)
    w = state.weights + lr * m / (v.sqrt() + cfg.tau)
    return state.next(w, {"t": t, "m": m, "v": v})
