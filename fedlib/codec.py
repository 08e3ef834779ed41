"""Reduced-precision payloads: a client's update is rounded to bf16/fp16 for the wire and
summed in fp32 on arrival. With error feedback each client keeps what rounding lost and adds
it to its next update, so over rounds the decoded updates sum to the true ones (up to the last
residual). Residuals live in files under the run folder, keyed by client id, so any rank can
continue a client's residual and the result does not depend on the number of ranks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

WIRE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TAIL = 4  # int16 slots carrying the two float32 trailing values (weight, count)


class ResidualStore:
    """Per-client float32 residuals, one file each (atomic writes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, cid: int, numel: int) -> torch.Tensor:
        path = self.folder / f"{cid}.pt"
        return torch.load(path, weights_only=True) if path.is_file() else torch.zeros(numel)

    def put(self, cid: int, residual: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{cid}.{os.getpid()}.tmp"
        torch.save(residual, tmp)
        os.replace(tmp, self.folder / f"{cid}.pt")


class Codec:
    def __init__(self, dtype: str = "fp32", residuals: ResidualStore | None = None) -> None:
        self.wire = WIRE[dtype]
        self.residuals = residuals

    @property
    def lossless(self) -> bool:
        return self.wire == torch.float32

    @property
    def itemsize(self) -> int:
        return torch.finfo(self.wire).bits // 8

    def encode(self, cid: int, delta: torch.Tensor) -> torch.Tensor:
        """`delta` (fp32, plus the client's residual) rounded to the wire dtype."""
        if self.residuals is not None:
            delta = delta + self.residuals.get(cid, delta.numel())
        q = delta.to(self.wire)
        if self.residuals is not None:
            self.residuals.put(cid, delta - q.float())
        return q


def pack(q: torch.Tensor, weight: float, count: float, out: np.ndarray) -> np.ndarray:
    """Wire bytes as int16: the 16-bit update, then (weight, count) as two float32."""
    n = q.numel()
    out[:n] = q.view(torch.int16).numpy()
    out[n:] = np.array([weight, count], dtype=np.float32).view(np.int16)
    return out


def unpack(buf: np.ndarray, dtype: torch.dtype) -> tuple[torch.Tensor, float, float]:
    n = buf.size - TAIL
    q = torch.from_numpy(buf[:n]).view(dtype)
    weight, count = buf[n:].view(np.float32)
    return q, float(weight), float(count)
