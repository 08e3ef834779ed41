"""Server rules: pure functions (state, averaged update) -> new state."""

from __future__ import annotations

import torch

from ..config import StrategyConfig
from . import adaptive, fedavg, fedavgm
from .state import ServerState

__all__ = ["ServerState", "server_step"]


def server_step(state: ServerState, delta: torch.Tensor, cfg: StrategyConfig) -> ServerState:
    """Apply the averaged client update `delta` with the configured algorithm."""
    if cfg.algorithm in ("fedavg", "fedprox"):
        return fedavg.step(state, delta, cfg.server_lr)
    if cfg.algorithm == "fedavgm":
        return fedavgm.step(state, delta, cfg)
    return adaptive.step(state, delta, cfg)
