"""The trainable parameters of a model as one contiguous float32 vector: what is packed,
reduced and broadcast. Frozen tensors (and buffers) never travel.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatParams:
    """A fixed view of `model`'s trainable tensors, in registration order."""

    def __init__(self, model: nn.Module) -> None:
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shapes = [tuple(p.shape) for p in self.params]
        self.numel = sum(p.numel() for p in self.params)

    @property
    def nbytes(self) -> int:
        return self.numel * 4

    def get(self) -> torch.Tensor:
        """A new float32 vector of the current trainable values."""
        with torch.no_grad():
            return torch.cat([p.detach().reshape(-1).float() for p in self.params])

    def set(self, vec: torch.Tensor) -> None:
        if vec.numel() != self.numel:
            raise ValueError(f"flat vector has {vec.numel()} values, model needs {self.numel}")
        with torch.no_grad():
            offset = 0
            for p in self.params:
                n = p.numel()
                p.copy_(vec[offset : offset + n].view_as(p))
                offset += n

    def add_delta_to(self, acc: torch.Tensor, base: torch.Tensor, weight: float) -> None:
        """acc += weight * (current - base), tensor by tensor (no full-size temporary)."""
        with torch.no_grad():
            offset = 0
            for p in self.params:
                n = p.numel()
                a = acc[offset : offset + n]
                a.add_(p.detach().reshape(-1).float(), alpha=weight)
                a.add_(base[offset : offset + n], alpha=-weight)
                offset += n

    def delta_into(self, out: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """out = current - base, tensor by tensor (no full-size temporary)."""
        with torch.no_grad():
            offset = 0
            for p in self.params:
                n = p.numel()
                torch.sub(p.detach().reshape(-1), base[offset : offset + n], out=out[offset : offset + n])
                offset += n
        return out

    def views(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """`vec` cut into tensors shaped like the parameters (no copy)."""
        out, offset = [], 0
        for p in self.params:
            n = p.numel()
            out.append(vec[offset : offset + n].view_as(p))
            offset += n
        return out
