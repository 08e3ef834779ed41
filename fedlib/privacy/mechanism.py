"""The privacy hooks every round calls (fedlib.privacy): `Mechanism` is the mode `none`, and the
base that the DP modes (client_level, dpsgd) override. Its own module so that those modes and
the package that picks one do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import ClientConfig
from ..sim import client

if TYPE_CHECKING:
    from ..learn.data import TextSplit
    from ..strategies import ServerState
    from ..wire.aggregate import Aggregate
    from ..wire.flat import FlatParams

Work = Sequence[tuple[int, int]]  # (client, local steps): the training given out for one version


class Mechanism:
    """No privacy: the engine's own behaviour."""

    always_releases = False  # True: every round's (noised) aggregate is released, never skipped
    key: str | None = None  # where `record` keeps the spending in ServerState.extra

    def plan(self, state: ServerState) -> None:
        """Fix what the remaining rounds use given what `state` already spent (ConfigError if
        that cannot be done); called once before the first round, fresh or resumed."""

    def admit(self, state: ServerState, rnd: int, work: Work) -> str | None:
        """Why version `rnd`, which may train `work`, must not be made (the budget: `spend` of
        that work would pass it), or None."""
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

    def spend(self, state: ServerState, work: Work, ahead: bool = False) -> ServerState:
        """`state` with the privacy spending of `work` folded into its (checkpointed) history:
        one version's training (its aggregate released), or with `ahead` the tasks an
        asynchronous server handed out for versions still to come (charged when handed out). The
        loop body charges every version, a diverged one too (onto the state it keeps): its
        training happened and its result was scored, so it was a release even though its
        weights are dropped."""
        return state

    def metrics(self, state: ServerState, rnd: int) -> dict[str, float]:
        return {}
