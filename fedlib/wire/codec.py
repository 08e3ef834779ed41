"""Reduced-precision payloads: a client's update is rounded to bf16/fp16 for the wire and
summed in fp32 on arrival. With error feedback each client keeps what rounding lost and adds
it to its next update, so over rounds the decoded updates sum to the true ones (up to the last
residual). Residuals live in files under the run folder, keyed by client id and round, so any
rank can continue a client's residual (the result does not depend on the number of ranks) and a
checkpoint can name the residuals it covers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .aggregate import Update

WIRE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TAIL = 4  # int16 slots carrying the two float32 trailing values (weight, count)


class ResidualStore:
    """Per-client float32 residuals, part of the server state. Each is written once per round as
    `<cid>.<round>.pt` (atomically) and never modified, so the state at a checkpoint of round k is
    "each client's newest file of round <= k": the checkpoint records that manifest, a resume
    deletes what came later, and files no checkpoint can need are pruned."""

    def __init__(self, folder: Path, checkpoints: bool = True) -> None:
        self.folder = folder
        self.checkpoints = checkpoints  # False: no resume possible, keep only each client's newest

    def versions(self, cid: int | None = None) -> dict[int, list[int]]:
        """cid -> rounds with a residual file, ascending."""
        out: dict[int, list[int]] = {}
        for p in self.folder.glob(f"{'*' if cid is None else cid}.*.pt"):
            c, r = p.name.split(".")[:2]
            if c.isdigit() and r.isdigit():
                out.setdefault(int(c), []).append(int(r))
        return {c: sorted(rs) for c, rs in out.items()}

    def get(self, cid: int, numel: int, rnd: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The residual `cid` carries into round `rnd` (zeros when it has none yet), on `device`."""
        rs = [r for r in self.versions(cid).get(cid, []) if r < rnd]
        if not rs:
            return torch.zeros(numel, device=device)
        return torch.load(self.folder / f"{cid}.{rs[-1]}.pt", weights_only=True, map_location=device)

    def put(self, cid: int, rnd: int, residual: torch.Tensor) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{cid}.{os.getpid()}.tmp"
        torch.save(residual.cpu(), tmp)
        os.replace(tmp, self.folder / f"{cid}.{rnd}.pt")
        if not self.checkpoints:
            for r in self.versions(cid).get(cid, []):
                if r < rnd:
                    (self.folder / f"{cid}.{r}.pt").unlink(missing_ok=True)

    def manifest(self, rnd: int) -> dict[int, int]:
        """cid -> the round of its residual as of the end of round `rnd` (for the checkpoint)."""
        out = {}
        for c, rs in self.versions().items():
            kept = [r for r in rs if r <= rnd]
            if kept:
                out[c] = kept[-1]
        return out

    def restore(self, manifest: dict[int, int], rnd: int | None = None) -> None:
        """Delete every file not in `manifest`, from round <= `rnd` (None: every round). After a
        checkpoint this prunes what it no longer needs; on resume it drops later rounds' files."""
        for c, rs in self.versions().items():
            for r in rs:
                if manifest.get(c) != r and (rnd is None or r <= rnd):
                    (self.folder / f"{c}.{r}.pt").unlink(missing_ok=True)


CHUNK = 1 << 20  # elements converted at a time: a cache-sized fp32 temporary, not a model-sized one


def add_decoded(acc: torch.Tensor, q: torch.Tensor, alpha: float) -> None:
    """acc += alpha * q for a 16-bit q, chunk by chunk (mixed-dtype in-place ops are ~5x slower)."""
    for i in range(0, q.numel(), CHUNK):
        acc[i : i + CHUNK].add_(q[i : i + CHUNK].float(), alpha=alpha)


class Codec:
    def __init__(self, dtype: str = "fp32", residuals: ResidualStore | None = None) -> None:
        self.wire = WIRE[dtype]
        self.residuals = residuals
        self._delta: torch.Tensor | None = None  # fp32 scratch for the update being rounded

    @property
    def lossless(self) -> bool:
        return self.wire == torch.float32

    @property
    def itemsize(self) -> int:
        return torch.finfo(self.wire).bits // 8

    def encode(self, cid: int, delta: torch.Tensor, out: torch.Tensor | None = None,
               rnd: int = 0) -> torch.Tensor:
        """`delta` (fp32, plus the client's residual) rounded to the wire dtype, into `out` if
        given. `delta` is scratch: with error feedback it ends up holding the new residual."""
        if self.residuals is not None:
            delta.add_(self.residuals.get(cid, delta.numel(), rnd, delta.device))
        q = torch.empty(delta.shape, dtype=self.wire, device=delta.device) if out is None else out
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


Wire = torch.Tensor | np.ndarray  # int16 message buffer; numpy accepted for host-side callers


def _tensor(buf: Wire) -> torch.Tensor:
    return torch.from_numpy(buf) if isinstance(buf, np.ndarray) else buf


def wire_update(buf: Wire, dtype: torch.dtype) -> torch.Tensor:
    """The update part of an int16 wire buffer, seen as `dtype` (no copy)."""
    t = _tensor(buf)
    return t[: t.numel() - TAIL].view(dtype)


def set_tail(buf: Wire, weight: float, count: float) -> None:
    t = _tensor(buf)
    tail = torch.tensor([weight, count], dtype=torch.float32, device=t.device)
    t[t.numel() - TAIL :] = tail.view(torch.int16)


def unpack(buf: Wire, dtype: torch.dtype) -> tuple[torch.Tensor, float, float]:
    """Wire bytes (int16: the 16-bit update, then weight and count as two float32) -> views.
    The tail is copied before it is read as float32 (it may sit at an odd int16 offset)."""
    t = _tensor(buf)
    weight, count = t[t.numel() - TAIL :].clone().view(torch.float32).tolist()
    return wire_update(t, dtype), float(weight), float(count)
