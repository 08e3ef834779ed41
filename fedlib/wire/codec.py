"""Reduced-precision payloads: a client's update is rounded to bf16/fp16 for the wire and
summed in fp32 on arrival. With error feedback each client keeps what rounding lost and adds
it to its next update, so over rounds the decoded updates sum to the true ones (up to the last
residual). The residuals are server state, kept by `fedlib.record.residuals.ResidualStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..record.residuals import ResidualStore  # the server-state side: beside the checkpoint
    from .aggregate import Update

PAYLOAD_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TAIL = 4  # int16 slots carrying the two float32 trailing values (weight, count)


CHUNK = 1 << 20  # elements converted at a time: a cache-sized fp32 temporary, not a model-sized one


def add_decoded(acc: torch.Tensor, q: torch.Tensor, alpha: float) -> None:
    """acc += alpha * q for a 16-bit q, chunk by chunk (mixed-dtype in-place ops are ~5x slower)."""
    for i in range(0, q.numel(), CHUNK):
        acc[i : i + CHUNK].add_(q[i : i + CHUNK].float(), alpha=alpha)


class Codec:
    def __init__(self, dtype: str = "fp32", residuals: ResidualStore | None = None) -> None:
        self.dtype = PAYLOAD_DTYPES[dtype]
        self.residuals = residuals
        self._delta: torch.Tensor | None = None  # fp32 scratch for the update being rounded

    @property
    def lossless(self) -> bool:
        return self.dtype == torch.float32

    def encode(self, cid: int, delta: torch.Tensor, out: torch.Tensor | None = None,
               rnd: int = 0) -> torch.Tensor:
        """`delta` (fp32, plus the client's residual) rounded to the wire dtype, into `out` if
        given. `delta` is scratch: with error feedback it ends up holding the new residual."""
        if self.residuals is not None:
            delta.add_(self.residuals.get(cid, delta.numel(), rnd, delta.device))
        q = torch.empty(delta.shape, dtype=self.dtype, device=delta.device) if out is None else out
        q.copy_(delta)
        if self.residuals is not None:
            add_decoded(delta, q, -1.0)
            self.residuals.put(cid, rnd, delta)
        return q


    def encode_update(self, update: Update, out: torch.Tensor | None = None) -> torch.Tensor:
        """A client's update (weights - base), rounded to the wire dtype (into `out` if given).
        The fp32 difference is formed in a reusable buffer, tensor by tensor."""
        flat = update.flat
        if self._delta is None or self._delta.numel() != flat.numel:
            self._delta = torch.empty(flat.numel, dtype=torch.float32, device=update.base.device)
        return self.encode(update.cid, flat.delta_into(self._delta, update.base), out, update.rnd)


Message = torch.Tensor | np.ndarray  # int16 message buffer; numpy accepted for host-side callers


def _tensor(buf: Message) -> torch.Tensor:
    return torch.from_numpy(buf) if isinstance(buf, np.ndarray) else buf


def update_view(buf: Message, dtype: torch.dtype) -> torch.Tensor:
    """The update part of an int16 message buffer, seen as `dtype` (no copy)."""
    t = _tensor(buf)
    return t[: t.numel() - TAIL].view(dtype)


def set_tail(buf: Message, weight: float, count: float) -> None:
    t = _tensor(buf)
    tail = torch.tensor([weight, count], dtype=torch.float32, device=t.device)
    t[t.numel() - TAIL :] = tail.view(torch.int16)


def unpack(buf: Message, dtype: torch.dtype) -> tuple[torch.Tensor, float, float]:
    """Message bytes (int16: the 16-bit update, then weight and count as two float32) -> views.
    The tail is copied before it is read as float32 (it may sit at an odd int16 offset)."""
    t = _tensor(buf)
    weight, count = t[t.numel() - TAIL :].clone().view(torch.float32).tolist()
    return update_view(t, dtype), float(weight), float(count)
