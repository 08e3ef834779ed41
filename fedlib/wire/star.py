"""`p2p` aggregation: the rank-0 star baseline. For every client a rank sends a one-number
header (is an update coming?) and, if so, the update as its own message; rank 0 sums them,
steps the server state and broadcasts the new weights. Rank 0 receives slot by slot (its j-th
client, then every other rank's j-th), so the summation order is fixed. A client that dropped
out, missed the deadline or produced NaN sends only the header.

A message is a one-client `Aggregate` (fp32), or with a lossy codec the 16-bit update plus its
weight and count (`codec`'s layout): half the bytes. With `overlap` the messages run on a
background thread while the next client trains (`overlap`); two staging buffers per rank
instead of one, plus a receive buffer on rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial

import torch

from .aggregate import EXTRA, Aggregate, Update
from .codec import TAIL, Codec, add_decoded, set_tail, unpack, update_view
from .comm import Comm
from .overlap import Pipeline, Ring
from .timer import Timer


class Star:
    server_on_every_rank = False

    def __init__(self, comm: Comm, numel: int, codec: Codec | None = None, overlap: bool = False,
                 device: torch.device | None = None) -> None:
        if overlap and not getattr(comm, "serialized_threads", True):
            raise RuntimeError("federation.overlap needs MPI initialized with MPI_THREAD_SERIALIZED "
                               "or higher; this MPI library gives less")
        self.comm, self.numel = comm, numel
        self.codec = codec or Codec()
        self.device = torch.device("cpu") if device is None else torch.device(device)
        staged = [self._message_buffer() for _ in range(2 if overlap else 1)]
        self._inbox = self._message_buffer() if overlap else staged[0]
        self.acc = Aggregate.zeros(numel, self.device)
        self.pipe = Pipeline(overlap, self.device)
        self._stage = Ring(staged)

    def _message_buffer(self) -> torch.Tensor:
        if self.codec.lossless:
            return torch.zeros(self.numel + EXTRA, dtype=torch.float32, device=self.device)
        return torch.zeros(self.numel + TAIL, dtype=torch.int16, device=self.device)

    def _header(self, value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64, device=self.device)

    def begin(self, plan: Sequence[Sequence[int]]) -> None:
        """`plan[r]` lists the clients rank r trains this round, in order."""
        self.plan = plan
        self.acc.zero_()
        self._slot = 0

    def submit(self, update: Update | None, timer: Timer) -> None:
        """Send (or, on rank 0, fold) a client's update; None sends only the header."""
        if update is None:
            self._post(None, timer)
            return
        i, msg = self._stage.take(timer)
        with timer("pack"):
            if self.codec.lossless:
                Aggregate(msg).set_client(update)
            else:
                self.codec.encode_update(update, update_view(msg, self.codec.dtype))
                set_tail(msg, update.weight, 1.0)
        self._stage.hold(i, self._post(msg, timer))

    def _post(self, msg: torch.Tensor | None, timer: Timer) -> Future[None] | None:
        slot = self._slot
        self._slot += 1
        job = self._collect if self.comm.rank == 0 else self._send
        return self.pipe.run(partial(job, slot, msg), timer)

    def _send(self, slot: int, msg: torch.Tensor | None, timer: Timer) -> None:
        with timer("comm"):
            self.comm.send(self._header(0.0 if msg is None else 1.0), dest=0, tag=2 * slot)
            if msg is not None:
                self.comm.send(msg, dest=0, tag=2 * slot + 1)

    def _collect(self, slot: int, own: torch.Tensor | None, timer: Timer) -> None:
        """Rank 0: fold its own slot-th message, then every other rank's."""
        if own is not None:
            with timer("pack"):
                self._fold(own)
        header = self._header(0.0)
        for r in range(1, self.comm.size):
            if slot < len(self.plan[r]):
                with timer("comm"):
                    self.comm.recv(header, source=r, tag=2 * slot)
                    coming = bool(header[0])
                    if coming:
                        self.comm.recv(self._inbox, source=r, tag=2 * slot + 1)
                if coming:
                    with timer("pack"):
                        self._fold(self._inbox)

    def _fold(self, msg: torch.Tensor) -> None:
        if self.codec.lossless:
            self.acc.add_(Aggregate(msg))
        else:
            q, weight, count = unpack(msg, self.codec.dtype)
            add_decoded(self.acc.total, q, weight)
            self.acc.count_(weight, count)

    def finish(self, timer: Timer) -> Aggregate | None:
        """The round's aggregate on rank 0 (None elsewhere), once every message has arrived."""
        if self.comm.rank == 0:
            for j in range(self._slot, max(len(p) for p in self.plan)):
                self.pipe.run(partial(self._collect, j, None), timer)
        self.pipe.drain(timer)
        return self.acc if self.comm.rank == 0 else None

    def distribute(self, weights: torch.Tensor, timer: Timer) -> torch.Tensor:
        """Rank 0 broadcasts its new global weights; other ranks get a fresh copy."""
        out = weights if self.comm.rank == 0 else torch.empty(self.numel, device=self.device)
        with timer("wait"):
            self.comm.barrier()
        with timer("comm"):
            self.comm.broadcast(out, root=0)
        return out

    def close(self) -> None:
        self.pipe.close()
