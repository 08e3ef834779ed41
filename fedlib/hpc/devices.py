"""Which device this rank computes on, the precision it computes in and its CPU threads: the
one module that interprets the `device`, `client.precision` and `threads` keys. Everything else
receives a `torch.device`.

`auto` binds each rank to one accelerator of its node — local rank modulo the visible devices,
so 8 ranks on a 4-GPU node share each GPU by two — and falls back to the CPU, with a warning
when the node has GPUs that the imported torch cannot use. Intel GPUs need IPEX imported before
`torch.xpu` on the sites' builds (ALCF's frameworks module); the launcher's and the sites' masks
(CUDA_VISIBLE_DEVICES, ROCR_/HIP_VISIBLE_DEVICES, ZE_AFFINITY_MASK) decide what "visible" is. Results on one
device type are reproducible run to run (every draw comes from a generator seeded by (seed,
round, client)); CPU and GPU runs differ in floating point (kernels sum in different orders).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from . import launcher
from .vendor import import_optional

PRECISION = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


_WARNED: set[str] = set()
# The variables that narrow what a GPU runtime shows, per vendor: Slurm's gpu plugins set the
# first of each (gres/gpu), site scripts set them per rank (ALCF gpu_tile_compact.sh: one tile).
MASKS = {"nvidia": ("CUDA_VISIBLE_DEVICES",),
         "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"),
         "intel": ("ZE_AFFINITY_MASK",)}
LAUNCHER_GPU_VARS = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "GPU_DEVICE_ORDINAL")


def _xpu_count() -> int:
    import_optional("intel_extension_for_pytorch")  # before torch.xpu: IPEX builds need it
    xpu = getattr(torch, "xpu", None)
    return xpu.device_count() if xpu is not None and xpu.is_available() else 0


def _count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return _xpu_count()


def visible(vendor: str, env: Mapping[str, str] | None = None) -> tuple[str, int | None]:
    """(the masks that apply, e.g. "ROCR_VISIBLE_DEVICES=0,1", how many devices they leave, or
    None when unmasked). ROCm applies HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES) to what
    ROCR_VISIBLE_DEVICES left; an empty mask hides every device."""
    env = os.environ if env is None else env
    set_ = [(v, env[v]) for v in MASKS[vendor] if v in env]
    if not set_:
        return "", None
    n = len([e for e in set_[-1][1].split(",") if e.strip()])
    return " ".join(f"{v}={x}" for v, x in set_), n


def node_gpus(env: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> list[str]:
    """Evidence that this node has GPUs, whatever torch says: device files the drivers create
    (/dev/nvidiaN, /dev/kfd for ROCm, /dev/dri render nodes) and the launcher's GPU variables."""
    env = os.environ if env is None else env
    found = []
    nv = sorted(p.name for p in dev.glob("nvidia[0-9]*"))
    if nv:
        found.append(f"{len(nv)} NVIDIA device file(s) ({dev}/{nv[0]}...)")
    if (dev / "kfd").exists():
        found.append(f"AMD ROCm driver ({dev}/kfd)")
    masks = {m for ms in MASKS.values() for m in ms}
    gpu_vars = [f"{v}={env[v]}" for v in (*LAUNCHER_GPU_VARS, *sorted(masks))
                if env.get(v, "").strip() and not (v == "SLURM_GPUS_ON_NODE" and env[v].strip() == "0")]
    if gpu_vars and any((dev / "dri").glob("renderD*")):
        found.append(f"GPU render nodes ({dev}/dri/renderD*)")
    return found + gpu_vars


def unused_gpus(env: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> str | None:
    """A one-line warning when the node has GPUs (`node_gpus`) but the imported torch sees none:
    a CPU or wrong-vendor torch build, a missing IPEX, or a mask that hides every device."""
    if _count("cuda") or _count("xpu"):
        return None
    env = os.environ if env is None else env
    evidence = node_gpus(env, dev)
    if not evidence:
        return None
    evidence += [f"{m} is empty (hides every GPU)" for m in sorted({m for ms in MASKS.values() for m in ms})
                 if m in env and not env[m].strip()]
    build = (f"torch {torch.__version__} (CUDA {torch.version.cuda}, "
             f"ROCm {getattr(torch.version, 'hip', None)})")
    return (f"this node has GPUs ({'; '.join(evidence)}) but {build} sees none, so it computes "
            f"on the CPU; use the site's torch (make install SITE=1), check the GPU masks, "
            f"or set device: cpu to say so")


def resolve(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch.device for the `device` key on this rank (ConfigError if it is not there), made
    the current device of its kind (so NCCL/oneCCL/RCCL and default allocations use it too)."""
    lr = launcher.local_rank() if local_rank is None else local_rank
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        for kind in ("cuda", "xpu"):
            if n := _count(kind):
                return _current(torch.device(kind, lr % n))
        msg = unused_gpus()
        if msg and msg not in _WARNED:
            _WARNED.add(msg)
            warnings.warn(f"device: auto: {msg}", stacklevel=2)
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    n = _count(kind)
    if n == 0:
        raise ConfigError(f"device: {name!r} requested but torch sees no {kind} device "
                          f"(torch {torch.__version__}); use device: auto or cpu")
    i = int(index) if index else lr % n
    if i >= n:
        raise ConfigError(f"device: {name!r} but only {n} {kind} device(s) are visible")
    return _current(torch.device(kind, i))


def set_threads(threads: int | None, ranks: int) -> None:
    """torch's threads on this rank: `threads`, else the launcher's word (OMP_NUM_THREADS,
    SLURM_CPUS_PER_TASK, cores / ranks per node under Open MPI, Slurm, PALS or Hydra); warns
    when this node's ranks x threads exceed its CPUs."""
    threads = threads if threads is not None else launcher.threads_per_rank(ranks)
    if threads is not None:
        torch.set_num_threads(threads)
    launcher.warn_oversubscription(torch.get_num_threads(), ranks)


@contextmanager
def builder_threads(ranks: int) -> Iterator[int]:
    """torch threads while this rank builds a cache its node's other ranks wait for at an idle
    barrier (`store.build_once`): its own threads times the node's ranks, within the CPUs it may run
    on (a rank bound to its own cores gains nothing, and loses nothing). Yields the count."""
    before = torch.get_num_threads()
    n = max(before, min(before * launcher.local_size(ranks), launcher._cpus()))
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def _current(dev: torch.device) -> torch.device:
    getattr(torch, dev.type).set_device(dev.index)
    return dev


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
