"""The one interface the round loop sees for moving client updates: begin(plan) /
submit(update) / finish() -> Aggregate / distribute(weights). Two implementations:
`Collective` (allreduce of per-rank sums) and `Star` (the rank-0 point-to-point baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from .aggregate import Aggregate, Update
from .codec import Codec
from .collective import Collective
from .comm import Comm
from .star import Star
from .timer import Timer


class Exchange(Protocol):
    server_on_every_rank: bool  # False: only rank 0 steps the server; the others receive weights

    def begin(self, plan: Sequence[Sequence[int]]) -> None: ...
    def submit(self, update: Update | None, timer: Timer) -> None: ...
    def finish(self, timer: Timer) -> Aggregate | None: ...
    def distribute(self, weights: torch.Tensor, timer: Timer) -> torch.Tensor: ...
    def close(self) -> None: ...


def make(comm: Comm, numel: int, mode: str, codec: Codec | None = None, overlap: bool = False,
         device: torch.device | None = None) -> Exchange:
    """`mode` is federation.aggregation (collective | p2p). One rank needs no star. Buffers
    live on `device` (the model's); the comm stages them to the host only if it must."""
    if mode == "p2p" and comm.size > 1:
        return Star(comm, numel, codec, overlap, device)
    return Collective(comm, numel, codec, device)
