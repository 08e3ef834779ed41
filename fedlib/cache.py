"""Frozen-prefix feature cache: the frozen part of the model (fedlib.frozen) is a fixed function
of each example, so compute it once, keep it on disk, and let clients train only the layers
above it (`model.cache_features`).

Layout: one `.npy` per (frozen weights, tokenized split, k, pooling, dtype), memory-mapped on
read. Hidden states are stored ragged — each example's real tokens only, rows concatenated
in example order — so the cache costs sum(lengths) x hidden, not N x max_length x hidden;
`FeatureSplit.batch` re-pads a batch with zeros (padded positions are masked out of
attention and pooling, so their values never reach the loss). With k = all the rows are the
pooled features (N x hidden). The first rank of each node builds a missing cache (under a
temporary name unique per host and pid, then renamed: `store.build_once`), the other ranks
wait at a barrier; a valid cache is never recomputed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from . import frozen
from .config import ModelConfig
from .data import TextData, TextSplit
from .store import build_once, cache_dir

if TYPE_CHECKING:
    from .wire.comm import Comm

BUILDS = 0  # feature sets computed by this process (tests check reuse with it)
DTYPES = {"fp32": np.float32, "fp16": np.float16}


@dataclass(frozen=True)
class FeatureSplit:
    """A TextSplit's stand-in: the frozen prefix's output for its examples, batched like it."""

    store: np.ndarray  # (sum lengths, H) ragged hidden states, or (N, H) pooled features
    offsets: np.ndarray  # (N,) first store row of each example (ragged) or its row (pooled)
    pooled: bool
    rows: torch.Tensor  # (n,) examples of this split, indices into offsets
    lengths: torch.Tensor  # (n,) tokens
    labels: torch.Tensor  # (n,)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = self.rows[idx].cpu().numpy()
        lengths = self.lengths[idx]
        width = int(lengths.max())
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        if self.pooled:
            h = torch.from_numpy(np.asarray(self.store[self.offsets[rows]], dtype=np.float32))
        else:
            pos = self.offsets[rows][:, None] + np.arange(width)[None, :]
            valid = mask.cpu().numpy().astype(bool)
            h = torch.from_numpy(np.asarray(self.store[np.where(valid, pos, 0)], dtype=np.float32))
            h[~mask.bool()] = 0.0
        return {"hidden_states": h, "attention_mask": mask, "labels": self.labels[idx]}

    def subset(self, idx: torch.Tensor) -> FeatureSplit:
        return replace(self, rows=self.rows[idx], lengths=self.lengths[idx], labels=self.labels[idx])


def _key(model: nn.Module, prefix_modules: list[nn.Module], split: TextSplit,
         k: int | str, pooling: str, dtype: str) -> str:
    h = hashlib.sha256()
    h.update(repr((type(frozen.hf_of(model)).__name__, model.config.to_json_string(), k,
                   pooling if k == "all" else "", dtype, tuple(split.input_ids.shape))).encode())
    for m in prefix_modules:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(split.input_ids.cpu().numpy().tobytes())
    h.update(split.lengths.cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def compute(model: nn.Module, split: TextSplit, k: int | Literal["all"], pooling: str, dtype: str,
            batch_size: int = 64) -> np.ndarray:
    """The frozen prefix on every example of `split`, in the stored layout."""
    global BUILDS
    BUILDS += 1
    was = model.training
    model.eval()
    dev = next(model.parameters()).device  # built where the model lives (a GPU node: on its GPU)
    lengths = split.lengths.cpu().numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(split) if k == "all" else int(lengths.sum()), hidden), DTYPES[dtype])
    order = torch.argsort(split.lengths)
    for i in range(0, len(split), batch_size):
        idx = order[i : i + batch_size]
        b = split.batch(idx)
        h = frozen.prefix(model, k, pooling, b["input_ids"].to(dev), b["attention_mask"].to(dev))
        h = h.float().cpu().numpy()
        for j, r in enumerate(idx.tolist()):
            if k == "all":
                out[r] = h[j]
            else:
                out[offsets[r] : offsets[r] + lengths[r]] = h[j, : lengths[r]]
    model.train(was)
    return out


def features(model: nn.Module, split: TextSplit, cfg: ModelConfig, k: int | Literal["all"],
             prefix_modules: list[nn.Module], comm: Comm | None = None) -> FeatureSplit:
    """`split` as cached features: built once (rank 0), then memory-mapped everywhere."""
    path = cache_dir() / f"feat-{_key(model, prefix_modules, split, k, cfg.pooling, cfg.cache_dtype)}.npy"

    def write(tmp: Path) -> None:
        _write_npy(tmp, compute(model, split, k, cfg.pooling, cfg.cache_dtype))

    if not build_once(path, write, comm):
        raise OSError(f"feature cache {path} could not be written; set FEDLIB_CACHE to a writable folder")
    store = np.load(path, mmap_mode="r")
    lengths = split.lengths
    offsets = (np.arange(len(split)) if k == "all"
               else np.concatenate([[0], np.cumsum(lengths.cpu().numpy())[:-1]]).astype(np.int64))
    return FeatureSplit(store, offsets, k == "all", torch.arange(len(split)), lengths, split.labels)


def _write_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a bare name
        np.save(f, arr)


def attach(model: nn.Module, td: TextData, cfg: ModelConfig, comm: Comm | None = None
           ) -> tuple[frozen.Upper, TextData]:
    """(the trainable upper module, the data as cached features) for `model.cache_features`."""
    k = frozen.resolve(model, cfg.frozen)
    assert k is not None  # the config requires a frozen part with the cache
    frozen.check_cacheable(model, k, cfg.pooling)
    base = model.base_model
    prefix_modules = [base] if k == "all" else [base.embeddings, *frozen.encoder_layers(model)[:k]]
    train, ev = (features(model, split, cfg, k, prefix_modules, comm) for split in (td.train, td.eval))
    return frozen.Upper(model, k, cfg.pooling), replace(td, train=train, eval=ev)
