"""Local training of one virtual client, and evaluation.

A client starts from the global weights, trains on its shard with its own seeded generator
(so the result does not depend on which rank runs it), and leaves its new weights in the
model; the caller turns them into an update. FedProx's proximal term is added here, by
fedlib, whenever `mu > 0` — never left to client code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import seeds
from ..config import ClientConfig
from ..hpc.devices import Precision, seed_dropout
from ..learn.data import TextSplit
from ..seeds import Stream


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def on(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch cut on the host (indices from the CPU generator: the same rows on any device),
    moved to the model's device."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass(frozen=True)
class ClientResult:
    client_id: int
    num_samples: int
    steps: int
    loss: float
    compute_s: float


def batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """`steps` mini-batches of indices in [0, n): reshuffled every epoch, last one partial."""
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[i : i + batch_size]
            done += 1


def num_steps(n: int, cfg: ClientConfig) -> int:
    return cfg.local_steps if cfg.local_steps is not None else cfg.local_epochs * -(-n // cfg.batch_size)


def make_optimizer(params: list[nn.Parameter], cfg: ClientConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def prox_term(params: list[nn.Parameter], global_params: list[torch.Tensor], mu: float
              ) -> Callable[[], torch.Tensor]:
    """mu/2 * ||w - w_global||^2 over the trainable tensors."""
    def term() -> torch.Tensor:
        return 0.5 * mu * sum(((p - g) ** 2).sum() for p, g in zip(params, global_params, strict=True))
    return term


def train(model: nn.Module, shard: TextSplit, cfg: ClientConfig, seed: int, client_id: int,
          penalty: Callable[[], torch.Tensor] | None = None) -> ClientResult:
    """Train `model` in place on `shard`; the caller has loaded the global weights. `seed` is
    the client's training seed (`seeds.Stream.CLIENT`); batch order and dropout masks are two
    streams derived from it."""
    t0 = time.perf_counter()
    dev = device_of(model)
    seed_dropout(dev, seeds.seed(seed, Stream.DROPOUT))  # dropout masks
    gen = seeds.generator(seed, Stream.BATCHES)
    prec = Precision(cfg.precision, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    model.train()
    steps = num_steps(len(shard), cfg)
    losses = []
    for idx in batches(len(shard), cfg.batch_size, steps, gen):
        with prec.autocast():
            loss = model(**on(shard.batch(idx), dev)).loss
        total = loss.float() + penalty() if penalty is not None else loss.float()  # fp32 penalty
        opt.zero_grad(set_to_none=True)
        prec.step(opt, total, params, cfg.max_grad_norm)
        losses.append(loss.detach())
    mean_loss = float(torch.stack(losses).double().mean()) if losses else float("nan")  # one sync
    return ClientResult(client_id, len(shard), steps, mean_loss, time.perf_counter() - t0)


@torch.no_grad()
def confusion(model: nn.Module, split: TextSplit, num_labels: int, batch_size: int = 64
              ) -> tuple[np.ndarray, float]:
    """(confusion matrix counts [true, pred], summed loss) on `split`; sums add across ranks.
    Counted on the model's device; the host sees the final counts only."""
    model.eval()
    dev = device_of(model)
    cm = torch.zeros(num_labels * num_labels, dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    order = torch.argsort(split.lengths)  # similar lengths share a batch: less padding
    for i in range(0, len(split), batch_size):
        b = on(split.batch(order[i : i + batch_size]), dev)
        out = model(**b)
        loss_sum += out.loss.double() * len(b["labels"])
        cm += torch.bincount(b["labels"] * num_labels + out.logits.argmax(-1), minlength=num_labels**2)
    return cm.reshape(num_labels, num_labels).cpu().numpy(), float(loss_sum)


def scores(cm: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro-F1) from a confusion matrix; classes absent from both sides are skipped."""
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    return float(tp.sum() / max(cm.sum(), 1)), float(f1[present].mean()) if present.any() else 0.0
