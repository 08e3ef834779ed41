"""`collective` aggregation: every rank sums its own clients into its `Aggregate`; at the end
of the round one barrier (its time is the load-imbalance *wait*) and one allreduce combine the
ranks. Every rank then holds the same aggregate and steps its replica of the server state, so
there is nothing to distribute. With a lossy codec each update is rounded before it is summed;
the partial sums stay fp32 on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .aggregate import Aggregate, Update
from .codec import Codec, add_decoded
from .comm import Comm
from .timer import Timer


class Collective:
    server_on_every_rank = True

    def __init__(self, comm: Comm, numel: int, codec: Codec | None = None,
                 device: torch.device | None = None) -> None:
        self.comm, self.numel = comm, numel
        self.codec = codec or Codec()
        self.acc = Aggregate.zeros(numel, device)
        self._total = self.acc.total  # the view every submit folds into (made once, not per client)
        self._q = None if self.codec.lossless else torch.empty(numel, dtype=self.codec.wire, device=device)

    def begin(self, plan: Sequence[Sequence[int]]) -> None:
        self.acc.zero_()

    def submit(self, update: Update | None, timer: Timer) -> None:
        """Fold a client's update into this rank's sum; None: a planned client whose update is
        not kept (dropped, late, rejected)."""
        if update is None:
            return
        with timer("pack"):
            if self.codec.lossless:
                update.flat.add_delta_to(self._total, update.base, update.weight)
            else:
                add_decoded(self._total, self.codec.encode_update(update, self._q), update.weight)
            self.acc.count_(update.weight)

    def finish(self, timer: Timer) -> Aggregate:
        if self.comm.size > 1:
            with timer("wait"):
                self.comm.barrier()
            with timer("comm"):
                self.comm.allreduce(self.acc.buf)
        return self.acc

    def distribute(self, weights: torch.Tensor, timer: Timer) -> torch.Tensor:
        return weights  # every rank stepped the same server state

    def close(self) -> None:
        return None
