"""The privacy hooks every round calls (fedlib.privacy): `Mechanism` is the mode `none`, and the
base that the DP modes (client_level, dpsgd) override. Its own module so that those modes and
the package that picks one do not import each other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import ClientConfig
from ..sim import client

if TYPE_CHECKING:
    from ..learn.data import TextSplit
    from ..sim.participation import Fate
    from ..strategies import ServerState
    from ..wire.aggregate import Aggregate
    from ..wire.comm import Comm
    from ..wire.flat import FlatParams


class Mechanism:
    """No privacy: the engine's own behaviour."""

    always_releases = False  # True: every round's (noised) aggregate is released, never skipped
    key: str | None = None  # where `record` keeps the spending in ServerState.extra

    def plan(self, state: ServerState) -> None:
        """Fix what the remaining rounds use given what `state` already spent (ConfigError if
        that cannot be done); called once before the first round, fresh or resumed."""

    def admit(self, state: ServerState, rnd: int, fates: list[Fate]) -> str | None:
        """Why round `rnd`, with its clients' `fates` (drawn once by the loop), must not run
        (budget), or None."""
        return None

    def train(self, model: nn.Module, shard: TextSplit, cfg: ClientConfig, seed: int, cid: int,
              penalty: Any = None) -> client.ClientResult:
        return client.train(model, shard, cfg, seed, cid, penalty)

    def weight(self, num_samples: int) -> float:
        return float(num_samples)

    def bound(self, flat: FlatParams, base: torch.Tensor) -> None:
        """Bound the client's update (its weights minus `base`) in place before it is summed."""

    def finish(self, agg: Aggregate, rnd: int) -> Aggregate:
        """The aggregate the server step uses: noised, with its denominator (identically
        wherever the server step runs)."""
        return agg

    def record(self, state: ServerState, comm: Comm) -> ServerState:
        """Fold this round's privacy spending into the (checkpointed) server state."""
        return state

    def charge(self, kept: ServerState, released: ServerState) -> ServerState:
        """`kept` (the state a diverged run falls back to) with the spending of `released`: the
        diverged round's noised aggregate was computed and evaluated, so it was a release and
        its (σ, q) stays in the history even though its weights are dropped."""
        if self.key is None or self.key not in released.extra:
            return kept
        return replace(kept, extra={**kept.extra, self.key: released.extra[self.key]})

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        return {}
