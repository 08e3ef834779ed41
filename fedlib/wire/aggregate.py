"""A round's combined client updates as one value: the weighted sum Σ w_k·Δ_k, the total weight
Σ w_k and the number of clients. They live in one flat float32 buffer, [sum..., weight, count],
so a single allreduce (or one message on the star) combines all three; this module is the only
one that knows that layout. Everything else asks an `Aggregate` for its parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .flat import FlatParams

EXTRA = 2  # trailing slots: total weight, client count


@dataclass(frozen=True)
class Update:
    """A trained client's update as the wire takes it: the model's current trainable weights
    (in `flat`) minus `base`, to be summed with `weight`; round `rnd` names its error-feedback
    residual."""

    cid: int
    rnd: int
    flat: FlatParams
    base: torch.Tensor
    weight: float


@dataclass(frozen=True)
class Aggregate:
    buf: torch.Tensor  # float32, numel + EXTRA, on the compute device (what the comm sends)

    @classmethod
    def zeros(cls, numel: int, device: torch.device | str | None = None) -> Aggregate:
        return cls(torch.zeros(numel + EXTRA, dtype=torch.float32, device=device))

    @property
    def numel(self) -> int:
        return self.buf.numel() - EXTRA

    @property
    def total(self) -> torch.Tensor:
        """Σ w_k·Δ_k (a view: folding into it updates the aggregate)."""
        return self.buf[: self.numel]

    @property
    def weight(self) -> float:
        return float(self.buf[-2])

    @property
    def count(self) -> int:
        return int(round(float(self.buf[-1])))

    def zero_(self) -> None:
        self.buf.zero_()

    def add_(self, other: Aggregate) -> None:
        self.buf.add_(other.buf)

    def count_(self, weight: float, clients: float = 1.0) -> None:
        """Record `clients` more clients of total weight `weight` (their sum is folded by the caller)."""
        tail = self.buf[-EXTRA:]
        if tail.device.type == "cpu":  # one op; two indexed += cost 15 µs, paid per client
            tail.add_(torch.tensor((weight, clients), dtype=tail.dtype))
        else:  # no host-to-device copy per client
            tail[0] += weight
            tail[1] += clients

    def set_client(self, update: Update) -> None:
        """This buffer := one client's weighted update (a message of the fp32 star)."""
        self.buf.zero_()
        update.flat.add_delta_to(self.total, update.base, update.weight)
        self.count_(update.weight)

    def mean(self) -> torch.Tensor:
        """Σ w_k·Δ_k / Σ w_k: the update the server step applies."""
        if self.weight <= 0:
            raise ValueError("an aggregate with no weight has no mean")
        return self.total / self.weight

    def replace(self, total: torch.Tensor | None = None, weight: float | None = None) -> Aggregate:
        """A new aggregate with its sum and/or weight replaced (the client count is kept)."""
        buf = self.buf.clone()
        if total is not None:
            buf[: self.numel] = total
        if weight is not None:
            buf[-2] = weight
        return Aggregate(buf)
