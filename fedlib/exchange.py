"""How client updates travel between ranks within one round.

Each rank trains its clients one after another. Updates are summed, weighted by sample
count, into one flat float32 buffer whose last two slots hold the total weight and the number
of clients — so memory does not grow with the number of clients.

- `collective`: every rank keeps its running sum; one barrier (its time is the load-imbalance
  *wait*) and one allreduce per round combine ranks. Every rank then holds the aggregate and
  steps the (replicated) server state itself.
- `p2p`: the rank-0 star baseline. For every client a rank sends a one-number header (is an
  update coming?) and, if so, the update on its own message; rank 0 sums them, steps the
  server state and broadcasts the new weights. Rank 0 receives slot by slot (its j-th client,
  then every other rank's j-th), so the summation order is fixed. A client that dropped out,
  missed the deadline or produced NaN sends only the header.

With a lossy `Codec` (bf16/fp16 payloads) each client update is rounded before it is summed
(the sum itself stays fp32); in p2p mode the messages are 16-bit, halving the bytes. The
collective's per-rank partial sums stay fp32 on the wire.

With `overlap` (p2p only) the messages run on a background thread while the next client
trains (`fedlib.overlap`); two staging buffers per rank instead of one, plus a receive buffer
on rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial

import numpy as np
import torch

from .codec import TAIL, Codec, add_decoded, set_tail, unpack, wire_update
from .comm import Comm
from .flat import FlatParams
from .metrics import Timer
from .overlap import Pipeline, Ring

EXTRA = 2  # trailing slots: total weight, number of clients


class Exchange:
    """Accumulates this rank's client updates and combines them across ranks."""

    def __init__(self, comm: Comm, numel: int, mode: str, codec: Codec | None = None,
                 overlap: bool = False) -> None:
        self.comm, self.numel, self.mode = comm, numel, mode
        self.codec = codec or Codec()
        self.rnd = 0  # the round being exchanged (names the residual files)
        self.acc = torch.zeros(numel + EXTRA, dtype=torch.float32)
        self.star = mode == "p2p" and comm.size > 1
        overlap = overlap and self.star
        if overlap and not getattr(comm, "serialized_threads", True):
            raise RuntimeError("federation.overlap needs MPI initialized with MPI_THREAD_SERIALIZED "
                               "or higher; this MPI library gives less")
        self.pipe = Pipeline(overlap)
        # lossy codecs: the fp32 delta is formed here, then rounded (into the message, on the star)
        self._delta = None if self.codec.lossless else torch.empty(numel, dtype=torch.float32)
        self._q = None if self.codec.lossless or self.star else torch.empty(numel, dtype=self.codec.wire)
        if self.star:
            self._stage = Ring([self._message_buffer() for _ in range(2 if overlap else 1)])
            self._inbox = self._message_buffer() if overlap else self._stage.buffers[0]

    def _message_buffer(self) -> np.ndarray:
        if self.codec.lossless:
            return np.zeros(self.numel + EXTRA, dtype=np.float32)
        return np.zeros(self.numel + TAIL, dtype=np.int16)

    @property
    def payload_bytes(self) -> int:
        """One client update as it travels."""
        return self.numel * self.codec.itemsize

    @property
    def server_on_every_rank(self) -> bool:
        return not self.star

    def begin(self, plan: Sequence[Sequence[int]], rnd: int = 0) -> None:
        """`plan[r]` lists the clients rank r trains in round `rnd`, in order."""
        self.plan = plan
        self.rnd = rnd
        self.acc.zero_()
        self._slot = 0

    def add(self, flat: FlatParams, base: torch.Tensor, weight: float, timer: Timer, cid: int = 0) -> None:
        """Fold client `cid`, just trained (its weights are in `flat`), into the round's sum."""
        if not self.star:
            with timer("pack"):
                if self.codec.lossless:
                    flat.add_delta_to(self.acc[: self.numel], base, weight)
                    self._count(weight, 1.0)
                else:
                    self._fold(self._encode(flat, base, cid, self._q), weight, 1.0)
            return
        i, msg = self._stage.take(timer)
        with timer("pack"):
            if self.codec.lossless:
                t = torch.from_numpy(msg)
                t.zero_()
                flat.add_delta_to(t[: self.numel], base, weight)
                t[self.numel], t[self.numel + 1] = weight, 1
            else:
                self._encode(flat, base, cid, wire_update(msg, self.codec.wire))
                set_tail(msg, weight, 1.0)
        self._stage.hold(i, self._post(msg, timer))

    def _encode(self, flat: FlatParams, base: torch.Tensor, cid: int, out: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(cid, flat.delta_into(self._delta, base), out, self.rnd)

    def skip(self, timer: Timer) -> None:
        """A planned client whose update is not kept (dropped, late, rejected)."""
        if self.star:
            self._post(None, timer)

    def _post(self, msg: np.ndarray | None, timer: Timer) -> Future[None] | None:
        slot = self._slot
        self._slot += 1
        job = self._collect if self.comm.rank == 0 else self._send
        return self.pipe.run(partial(job, slot, msg), timer)

    def _send(self, slot: int, msg: np.ndarray | None, timer: Timer) -> None:
        with timer("comm"):
            self.comm.send(np.array([0.0 if msg is None else 1.0]), dest=0, tag=2 * slot)
            if msg is not None:
                self.comm.send(msg, dest=0, tag=2 * slot + 1)

    def _collect(self, slot: int, own: np.ndarray | None, timer: Timer) -> None:
        """Rank 0: fold its own slot-th message, then every other rank's."""
        if own is not None:
            with timer("pack"):
                self._fold_message(own)
        header = np.zeros(1)
        for r in range(1, self.comm.size):
            if slot < len(self.plan[r]):
                with timer("comm"):
                    self.comm.recv(header, source=r, tag=2 * slot)
                    if header[0]:
                        self.comm.recv(self._inbox, source=r, tag=2 * slot + 1)
                if header[0]:
                    with timer("pack"):
                        self._fold_message(self._inbox)

    def _fold_message(self, msg: np.ndarray) -> None:
        if self.codec.lossless:
            self.acc.add_(torch.from_numpy(msg))
        else:
            self._fold(*unpack(msg, self.codec.wire))

    def _fold(self, q: torch.Tensor, weight: float, count: float) -> None:
        add_decoded(self.acc[: self.numel], q, weight)
        self._count(weight, count)

    def _count(self, weight: float, count: float) -> None:
        self.acc[self.numel] += weight
        self.acc[self.numel + 1] += count

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
            for j in range(self._slot, max(len(p) for p in self.plan)):
                self.pipe.run(partial(self._collect, j, None), timer)
        self.pipe.drain(timer)
        return self.acc if self.comm.rank == 0 else None

    def distribute(self, weights: torch.Tensor, timer: Timer) -> torch.Tensor:
        """p2p: rank 0 broadcasts its new global weights; other ranks get a fresh copy."""
        out = weights if self.comm.rank == 0 else torch.empty(self.numel, dtype=torch.float32)
        with timer("wait"):
            self.comm.barrier()
        with timer("comm"):
            self.comm.broadcast(out.numpy(), root=0)
        return out

    def close(self) -> None:
        self.pipe.close()
