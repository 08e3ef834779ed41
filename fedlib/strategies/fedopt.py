"""FedOpt (Reddi et al., 2021, "Adaptive Federated Optimization"): the server treats the
negated average update as a gradient and steps a torch optimizer on it.

FedAdam = torch Adam (eps = tau), FedAdagrad = torch Adagrad (eps = tau), FedAvgM = torch SGD
with momentum. Each step rebuilds the optimizer from the saved state, so the function is pure:
(state, delta) -> new state, inputs untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy

import torch

from ..config import StrategyConfig
from .state import ServerState

OptFactory = Callable[[list[torch.Tensor], StrategyConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptFactory] = {
    "fedadam": lambda p, c: torch.optim.Adam(p, lr=c.server_lr, betas=(c.beta1, c.beta2), eps=c.tau),
    "fedadagrad": lambda p, c: torch.optim.Adagrad(p, lr=c.server_lr, eps=c.tau),
    "fedavgm": lambda p, c: torch.optim.SGD(p, lr=c.server_lr, momentum=c.momentum),
}


def step(state: ServerState, delta: torch.Tensor, cfg: StrategyConfig) -> ServerState:
    """One server optimizer step on the pseudo-gradient g = -delta."""
    w = state.weights.detach().clone().requires_grad_(True)
    opt = OPTIMIZERS[cfg.algorithm]([w], cfg)
    if state.opt_state:
        opt.load_state_dict(deepcopy(state.opt_state))
    w.grad = -delta.detach().float()
    opt.step()
    return state.next(w.detach(), opt.state_dict())
