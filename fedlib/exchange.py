"""How client updates travel between ranks within one round.

Each rank trains its clients one after another. Updates are summed, weighted by sample
count, into one flat float32 buffer whose last two slots hold the total weight and the number
of clients — so memory does not grow with the number of clients.

- `collective`: every rank keeps its running sum; one barrier (its time is the load-imbalance
  *wait*) and one allreduce per round combine ranks. Every rank then holds the aggregate and
  steps the (replicated) server state itself.
- `p2p`: the rank-0 star baseline. Every client's update is sent to rank 0 on its own
  message; rank 0 sums them, steps the server state and broadcasts the new weights. Rank 0
  receives slot by slot (its j-th client, then every other rank's j-th), so one receive
  buffer suffices and the summation order is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .comm import Comm
from .flat import FlatParams
from .metrics import Timer

EXTRA = 2  # trailing slots: total weight, number of clients


class Exchange:
    """Accumulates this rank's client updates and combines them across ranks."""

    def __init__(self, comm: Comm, numel: int, mode: str) -> None:
        self.comm, self.numel, self.mode = comm, numel, mode
        self.acc = torch.zeros(numel + EXTRA, dtype=torch.float32)
        self._buf = torch.zeros(numel + EXTRA, dtype=torch.float32) if mode == "p2p" else None

    @property
    def server_on_every_rank(self) -> bool:
        return self.mode == "collective" or self.comm.size == 1

    def begin(self, plan: Sequence[Sequence[int]]) -> None:
        """`plan[r]` lists the clients rank r trains this round, in order."""
        self.plan = plan
        self.acc.zero_()
        self._slot = 0

    def add(self, flat: FlatParams, base: torch.Tensor, weight: float, timer: Timer) -> None:
        """Fold the client just trained (its weights are in `flat`) into the round's sum."""
        if self.mode == "collective" or self.comm.size == 1:
            with timer("pack"):
                flat.add_delta_to(self.acc[: self.numel], base, weight)
                self.acc[self.numel] += weight
                self.acc[self.numel + 1] += 1
            return
        buf = self._buf
        with timer("pack"):
            buf.zero_()
            flat.add_delta_to(buf[: self.numel], base, weight)
            buf[self.numel], buf[self.numel + 1] = weight, 1
        if self.comm.rank == 0:
            self.acc.add_(buf)
            self._receive_slot(self._slot, timer)
        else:
            with timer("comm"):
                self.comm.send(buf.numpy(), dest=0, tag=self._slot)
        self._slot += 1

    def _receive_slot(self, j: int, timer: Timer) -> None:
        for r in range(1, self.comm.size):
            if j < len(self.plan[r]):
                with timer("comm"):
                    self.comm.recv(self._buf.numpy(), source=r, tag=j)
                with timer("pack"):
                    self.acc.add_(self._buf)

    def reduce(self, timer: Timer) -> torch.Tensor | None:
        """The summed buffer where the server step runs (every rank, or rank 0 in p2p)."""
        if self.comm.size == 1:
            return self.acc
        if self.mode == "collective":
            with timer("wait"):
                self.comm.barrier()
            with timer("comm"):
                self.comm.allreduce(self.acc.numpy())
            return self.acc
        if self.comm.rank == 0:
            longest = max(len(p) for p in self.plan)
            for j in range(self._slot, longest):
                self._receive_slot(j, timer)
            return self.acc
        return None

    def distribute(self, weights: torch.Tensor, timer: Timer) -> torch.Tensor:
        """p2p: rank 0 broadcasts its new global weights; other ranks get a fresh copy."""
        out = weights if self.comm.rank == 0 else torch.empty(self.numel, dtype=torch.float32)
        with timer("wait"):
            self.comm.barrier()
        with timer("comm"):
            self.comm.broadcast(out.numpy(), root=0)
        return out
