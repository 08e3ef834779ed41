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

With a lossy `Codec` (bf16/fp16 payloads) each client update is rounded before it is summed
(the sum itself stays fp32); in p2p mode the messages are 16-bit, halving the bytes. The
collective's per-rank partial sums stay fp32 on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .codec import TAIL, Codec, pack, unpack
from .comm import Comm
from .flat import FlatParams
from .metrics import Timer

EXTRA = 2  # trailing slots: total weight, number of clients


class Exchange:
    """Accumulates this rank's client updates and combines them across ranks."""

    def __init__(self, comm: Comm, numel: int, mode: str, codec: Codec | None = None) -> None:
        self.comm, self.numel, self.mode = comm, numel, mode
        self.codec = codec or Codec()
        self.acc = torch.zeros(numel + EXTRA, dtype=torch.float32)
        p2p = mode == "p2p" and comm.size > 1
        self._buf = torch.zeros(numel + EXTRA, dtype=torch.float32) if p2p else None
        self._wire = np.zeros(numel + TAIL, dtype=np.int16) if p2p and not self.codec.lossless else None

    @property
    def payload_bytes(self) -> int:
        """One client update as it travels."""
        return self.numel * self.codec.itemsize

    @property
    def server_on_every_rank(self) -> bool:
        return self.mode == "collective" or self.comm.size == 1

    def begin(self, plan: Sequence[Sequence[int]]) -> None:
        """`plan[r]` lists the clients rank r trains this round, in order."""
        self.plan = plan
        self.acc.zero_()
        self._slot = 0

    def add(self, flat: FlatParams, base: torch.Tensor, weight: float, timer: Timer, cid: int = 0) -> None:
        """Fold client `cid`, just trained (its weights are in `flat`), into the round's sum."""
        if not self.codec.lossless:
            return self._add_coded(flat, base, weight, timer, cid)
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

    def _add_coded(self, flat: FlatParams, base: torch.Tensor, weight: float, timer: Timer, cid: int) -> None:
        with timer("pack"):
            q = self.codec.encode(cid, flat.get() - base)
        if self._wire is None or self.comm.rank == 0:  # summed here: no message
            with timer("pack"):
                self._fold(q, weight, 1.0)
            if self._wire is not None:
                self._receive_slot(self._slot, timer)
        else:
            with timer("pack"):
                pack(q, weight, 1.0, self._wire)
            with timer("comm"):
                self.comm.send(self._wire, dest=0, tag=self._slot)
        self._slot += 1

    def _fold(self, q: torch.Tensor, weight: float, count: float) -> None:
        self.acc[: self.numel].add_(q.float(), alpha=weight)
        self.acc[self.numel] += weight
        self.acc[self.numel + 1] += count

    def _receive_slot(self, j: int, timer: Timer) -> None:
        for r in range(1, self.comm.size):
            if j < len(self.plan[r]):
                if self._wire is not None:
                    with timer("comm"):
                        self.comm.recv(self._wire, source=r, tag=j)
                    with timer("pack"):
                        self._fold(*unpack(self._wire, self.codec.wire))
                    continue
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
