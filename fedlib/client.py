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

from . import seeds
from .config import ClientConfig
from .data import TextSplit
from .seeds import Stream


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
    torch.manual_seed(seeds.seed(seed, Stream.DROPOUT))  # dropout masks (torch's global generator)
    gen = seeds.generator(seed, Stream.BATCHES)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    model.train()
    steps = num_steps(len(shard), cfg)
    losses = []
    for idx in batches(len(shard), cfg.batch_size, steps, gen):
        out = model(**shard.batch(idx))
        loss = out.loss
        total = loss + penalty() if penalty is not None else loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        losses.append(float(loss.detach()))
    return ClientResult(client_id, len(shard), steps, float(np.mean(losses)), time.perf_counter() - t0)


@torch.no_grad()
def confusion(model: nn.Module, split: TextSplit, num_labels: int, batch_size: int = 64
              ) -> tuple[np.ndarray, float]:
    """(confusion matrix counts [true, pred], summed loss) on `split`; sums add across ranks."""
    model.eval()
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    loss_sum = 0.0
    order = torch.argsort(split.lengths)  # similar lengths share a batch: less padding
    for i in range(0, len(split), batch_size):
        b = split.batch(order[i : i + batch_size])
        out = model(**b)
        loss_sum += float(out.loss) * len(b["labels"])
        pred = out.logits.argmax(-1).numpy()
        np.add.at(cm, (b["labels"].numpy(), pred), 1)
    return cm, loss_sum


def scores(cm: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro-F1) from a confusion matrix; classes absent from both sides are skipped."""
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    return float(tp.sum() / max(cm.sum(), 1)), float(f1[present].mean()) if present.any() else 0.0
