"""Which device this rank computes on, and the precision it computes in: the one module that
interprets the `device` and `client.precision` keys. Everything else receives a `torch.device`.

`auto` binds each rank to one accelerator of its node — local rank modulo the visible devices,
so 8 ranks on a 4-GPU node share each GPU by two — and falls back to the CPU. Results on one
device type are reproducible run to run (every draw comes from a generator seeded by (seed,
round, client)); CPU and GPU runs differ in floating point (kernels sum in different orders).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from .config import ConfigError
from .wire import launcher

PRECISION = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _xpu_count() -> int:
    xpu = getattr(torch, "xpu", None)
    return xpu.device_count() if xpu is not None and xpu.is_available() else 0


def _count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return _xpu_count()


def resolve(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch.device for the `device` key on this rank (ConfigError if it is not there)."""
    lr = launcher.local_rank() if local_rank is None else local_rank
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        for kind in ("cuda", "xpu"):
            if n := _count(kind):
                return torch.device(kind, lr % n)
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    n = _count(kind)
    if n == 0:
        raise ConfigError(f"device: {name!r} requested but torch sees no {kind} device "
                          f"(torch {torch.__version__}); use device: auto or cpu")
    i = int(index) if index else lr % n
    if i >= n:
        raise ConfigError(f"device: {name!r} but only {n} {kind} device(s) are visible")
    return torch.device(kind, i)


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` (Opacus draws its noise on the parameters' device)."""
    return torch.Generator(device=device).manual_seed(seed)


def seed_dropout(device: torch.device, seed: int) -> None:
    """Seed the generator(s) `device`'s dropout draws from: the CPU's default generator always
    (as `torch.manual_seed` does), plus the default generator of `device` itself on CUDA / XPU.
    `torch.manual_seed` also seeds every other backend (cuda, xpu, mtia, ...), queueing a lazy
    call with a formatted stack for each one not yet initialised: 0.1-0.5 ms per call, paid once
    per client — more than the local step itself when only the head trains."""
    torch.default_generator.manual_seed(seed)
    if device.type in ("cuda", "xpu"):
        mod = getattr(torch, device.type)
        index = device.index if device.index is not None else mod.current_device()
        mod.default_generators[index].manual_seed(seed)
    elif device.type != "cpu":
        torch.manual_seed(seed)


def to(obj: Any, device: torch.device) -> Any:
    """`obj` (tensors in dicts / lists / tuples) with every tensor moved to `device`; a
    checkpoint loads on the CPU and is moved here."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to(v, device) for v in obj)
    return obj


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a phase's seconds are its own (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


class Precision:
    """`client.precision`: autocast for the forward pass and loss on the device's type, plus a
    GradScaler for fp16 (its small range underflows gradients otherwise). Parameters, optimizer
    state and updates stay fp32: only the arithmetic inside autocast is reduced. Works on the CPU
    too (torch supports bf16 and fp16 autocast there), which is how the tests exercise it."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.dtype = PRECISION[name]
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    @property
    def reduced(self) -> bool:
        return self.dtype != torch.float32

    def autocast(self) -> Any:
        if not self.reduced:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.nn.Parameter],
             max_grad_norm: float | None) -> None:
        """backward, (unscale,) clip, step — scaled for fp16, plain otherwise."""
        if self.scaler is None:
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            return
        self.scaler.scale(loss).backward()
        if max_grad_norm is not None:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(opt)
        self.scaler.update()
