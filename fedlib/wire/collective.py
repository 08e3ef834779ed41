"""`collective` aggregation: every rank sums its own clients into its `Aggregate`; at the end
of the round one barrier (its time is the load-imbalance *wait*) and one allreduce combine the
ranks. Every rank then holds the same aggregate and steps its replica of the server state, so
there is nothing to distribute. With a lossy codec each update is rounded before it is summed;
the partial sums stay fp32 on the wire.

Σ w_k·(x_k − g) over a round's clients, who all start from the same global weights g, is folded
as Σ w_k·x_k with the shared −(Σ w_k)·g settled every `SETTLE_EVERY` clients: one pass over the
trainable vector per client instead of two. Settling in small groups keeps the running sum near
the size of a few clients' weights: its rounding error is ~4× that of subtracting g per client,
still far below the fp32 rounding of one client's own weights (tests/wire/test_flat.py). A round-long
running sum would be ~500× worse. It cut the per-client overhead of `bench scale` (top 2 layers,
1,000 clients, back-to-back runs) from 0.11 to 0.085 of compute on 1 rank and from 0.155 to 0.10
on 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .aggregate import Aggregate, Update
from .codec import Codec, add_decoded
from .comm import Comm
from .timer import Timer

SETTLE_EVERY = 4


class Collective:
    server_on_every_rank = True

    def __init__(self, comm: Comm, numel: int, codec: Codec | None = None,
                 device: torch.device | None = None) -> None:
        self.comm, self.numel = comm, numel
        self.codec = codec or Codec()
        self.acc = Aggregate.zeros(numel, device)
        self._total = self.acc.total  # the view every submit folds into (made once, not per client)
        self._q = None if self.codec.lossless else torch.empty(numel, dtype=self.codec.dtype, device=device)
        self._base: torch.Tensor | None = None  # g, owed −(weight)·g for `owed` clients folded as x
        self._owed_weight, self._owed = 0.0, 0

    def begin(self, plan: Sequence[Sequence[int]]) -> None:
        self.acc.zero_()
        self._base, self._owed_weight, self._owed = None, 0.0, 0

    def submit(self, update: Update | None, timer: Timer) -> None:
        """Fold a client's update into this rank's sum; None: a planned client whose update is
        not kept (dropped, late, rejected)."""
        if update is None:
            return
        with timer("pack"):
            if self.codec.lossless and update.flat.buf is not None:
                if update.base is not self._base:
                    self._settle()
                    self._base = update.base
                self._total.add_(update.flat.buf, alpha=update.weight)
                self._owed_weight += update.weight
                self._owed += 1
                if self._owed == SETTLE_EVERY:
                    self._settle()
            elif self.codec.lossless:
                update.flat.add_delta_to(self._total, update.base, update.weight)
            else:
                add_decoded(self._total, self.codec.encode_update(update, self._q), update.weight)
            self.acc.count_(update.weight)

    def _settle(self) -> None:
        if self._owed:
            self._total.add_(self._base, alpha=-self._owed_weight)
            self._owed_weight, self._owed = 0.0, 0

    def finish(self, timer: Timer) -> Aggregate:
        with timer("pack"):
            self._settle()
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
