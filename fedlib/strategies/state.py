"""Explicit server state: global weights, optimizer moments, round and any extra state of
wrappers (DP accountant, error feedback). Passed in and returned, never hidden; saved whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass(frozen=True)
class ServerState:
    weights: torch.Tensor  # flat float32 vector of trainable parameters
    round: int = 0  # rounds completed
    opt_state: dict[str, Any] = field(default_factory=dict)  # server optimizer moments (tensors, t)
    extra: dict[str, Any] = field(default_factory=dict)  # wrapper state (accountant, ...)

    def next(self, weights: torch.Tensor, opt_state: dict[str, Any]) -> ServerState:
        return replace(self, weights=weights, opt_state=opt_state, round=self.round + 1)
