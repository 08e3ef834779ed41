"""Buffers on their way to a backend: messages cut into chunks below 2 GiB, and device buffers
staged through (pinned) host memory for a backend that cannot read them, the copies timed.
Shared by `MPIComm` (fedlib.wire.comm) and `TorchComm` (fedlib.wire.torch_comm), so neither
imports the other. Importing it stays light: torch is imported when a buffer arrives.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_DEFAULT_CHUNK = 1 << 30  # bytes; MPI counts are int32, keep every message below 2 GiB
# an idle barrier's poll (Comm.barrier(idle=True)): a blocking wait spins a core a peer could use
IDLE_POLL_S = 0.01


def chunks(buf: torch.Tensor, chunk_bytes: int) -> list[torch.Tensor]:
    """Contiguous slices of `buf` of at most `chunk_bytes` (views: writes land in `buf`)."""
    flat = buf.view(-1)
    step = max(1, chunk_bytes // flat.element_size())
    return [flat[i : i + step] for i in range(0, flat.numel(), step)] or [flat]


def synchronize(device: Any) -> None:
    """Wait for the kernels queued on this thread's current stream of `device` (copies are
    asynchronous; a no-op on the CPU). The current stream, not the whole device: the overlap
    thread's transfers run on their own stream and must not wait for the training stream."""
    if device.type != "cpu":
        import torch

        getattr(torch, device.type).current_stream(device).synchronize()


class Staging:
    """Moves a buffer the backend cannot read to `target` (host or device) and back, timing it.
    Host copies of device buffers live in pinned memory, kept per (shape, dtype): copies from
    pageable memory go through a driver bounce buffer at a fraction of the bus's speed."""

    def __init__(self) -> None:
        self.copy_s = 0.0
        self._pinned: dict[tuple[Any, Any], torch.Tensor] = {}

    def host(self, like: torch.Tensor) -> torch.Tensor:
        """A pinned host buffer shaped like `like` (reused: pinning costs more than the copy)."""
        import torch

        key = (tuple(like.shape), like.dtype)
        if key not in self._pinned:
            self._pinned[key] = torch.empty(like.shape, dtype=like.dtype, pin_memory=True)
        return self._pinned[key]

    def there(self, buf: torch.Tensor, target: Any, fill: bool = True) -> torch.Tensor:
        """`buf` on `target`; `fill=False` for a buffer that will only be written (a receive)."""
        if buf.device.type == getattr(target, "type", target):
            return buf
        t = time.perf_counter()
        to_host = getattr(target, "type", target) == "cpu"
        if to_host and buf.device.type == "cuda":
            out = self.host(buf)
            if fill:
                out.copy_(buf, non_blocking=True)
        else:
            out = buf.to(target) if fill else buf.new_empty(buf.shape, device=target)
        synchronize(buf.device if out.device.type == "cpu" else out.device)
        self.copy_s += time.perf_counter() - t
        return out

    def back(self, buf: torch.Tensor, staged: torch.Tensor) -> None:
        if staged is not buf:
            t = time.perf_counter()
            buf.copy_(staged, non_blocking=staged.is_pinned())
            synchronize(buf.device)
            self.copy_s += time.perf_counter() - t
