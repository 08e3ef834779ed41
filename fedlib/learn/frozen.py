"""The frozen lower part of a classifier and the trainable part above it.

`model.freeze_layers: k` freezes the embeddings and the first k encoder layers (k = 0: the
embeddings only; `all`: the whole encoder including its pooler, so only the head trains).
Frozen means frozen: those modules also stay in eval mode (no dropout) when the model is put
in train mode, so the frozen prefix is a fixed function of the input — which is what makes
caching its output (the feature cache below) exact, and what a frozen feature extractor should be.

`Upper` is the trainable part as a module of its own (the same parameter objects, in the same
order as in the full model), run from cached hidden states: what clients train when
`model.cache_features` is on.

The feature cache (the second half of this module): the frozen part is a fixed function of
each example, so compute it once, keep it on disk, and let clients train only the layers
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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..config import ConfigError, ModelConfig
from ..hpc import devices
from ..hpc.store import build_once, cache_dir
from .data import TextData, TextSplit

if TYPE_CHECKING:
    from ..wire.comm import Comm


Frozen = int | Literal["all", "half"] | None


def _stay_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook: a frozen module runs without dropout whatever mode its parent is in."""
    if module.training:
        module.eval()


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    enc = getattr(model.base_model, "encoder", None)
    layers = getattr(enc, "layer", None) or getattr(enc, "albert_layer_groups", None)
    return list(layers) if layers is not None else []


def resolve(model: nn.Module, how: Frozen) -> int | Literal["all"] | None:
    """`how` as a layer count for this model ("half" -> n // 2), checked against its depth."""
    n = len(encoder_layers(model))
    k = n // 2 if how == "half" else how
    if isinstance(k, int) and k > n:
        raise ConfigError(f"model.freeze_layers: {k} but the model has {n} encoder layers")
    if isinstance(k, int) and k > 0 and getattr(model.config, "model_type", "") == "albert":
        raise ConfigError("model.freeze_layers: ALBERT shares one set of weights across its layers; "
                          "freeze 0 (embeddings) or all")
    return k


def freeze(model: nn.Module, how: Frozen) -> list[nn.Module]:
    """Freeze the lower part (no gradient, not sent, eval mode); returns the frozen modules."""
    k = resolve(model, how)
    if k is None:
        return []
    base = model.base_model
    frozen = [base] if k == "all" else [base.embeddings, *encoder_layers(model)[:k]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
        m.register_forward_pre_hook(_stay_eval)
    return frozen


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def classify(hf: nn.Module, pooled: torch.Tensor, labels: torch.Tensor | None) -> SequenceClassifierOutput:
    logits = hf.classifier(hf.dropout(pooled))
    loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits)


def hf_of(model: nn.Module) -> nn.Module:
    """The transformers model inside a wrapper that holds it as its `hf` child
    (models.MeanPooled), else `model` itself."""
    inner = model._modules.get("hf")
    return inner if inner is not None else model


def check_cacheable(model: nn.Module, k: int | Literal["all"], pooling: str) -> None:
    kind = getattr(model.config, "model_type", "")
    hf = hf_of(model)
    ok = (kind in ("bert", "albert") or pooling == "mean") if k == "all" else kind == "bert"
    if not ok or not isinstance(getattr(hf, "classifier", None), nn.Linear):
        raise ConfigError(f"model.cache_features: not supported for {kind!r} with freeze_layers={k} "
                          f"and pooling={pooling} (supported: BERT-architecture models such as MiniLM "
                          "for any k; ALBERT or pooling=mean for k=all); set model.cache_features: false")


def _mask4d(model: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> Any:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)


@torch.no_grad()
def prefix(model: nn.Module, k: int | Literal["all"], pooling: str, input_ids: torch.Tensor,
           mask: torch.Tensor) -> torch.Tensor:
    """The frozen part's output for a batch: hidden states (B, L, H) after k layers, or the
    pooled features (B, H) for k = all — exactly what the full model computes there."""
    base = model.base_model
    if k == "all":
        out = base(input_ids=input_ids, attention_mask=mask)
        return masked_mean(out.last_hidden_state, mask) if pooling == "mean" else out.pooler_output
    h = base.embeddings(input_ids=input_ids)
    m4 = _mask4d(model, h, mask)
    for layer in encoder_layers(model)[:k]:
        h = layer(h, m4)
    return h


class Upper(nn.Module):
    """The trainable part of a (frozen-prefix) classifier, run from the prefix's output.

    Holds the full model's own upper layers, pooler and classifier (shared parameters), so
    its trainable tensors are the full model's, in the same order."""

    def __init__(self, model: nn.Module, k: int | Literal["all"], pooling: str) -> None:
        super().__init__()
        self.k, self.pooling = k, pooling
        self.config = model.config
        hf = hf_of(model)
        self.layers = nn.ModuleList([] if k == "all" else encoder_layers(model)[k:])
        pooler = getattr(model.base_model, "pooler", None)
        self.pooler = pooler if (k != "all" and pooling == "cls") else None
        self.dropout, self.classifier = hf.dropout, hf.classifier

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        h = hidden_states
        if self.k != "all":
            m4 = _mask4d(self, h, attention_mask)
            for layer in self.layers:
                h = layer(h, m4)
            h = masked_mean(h, attention_mask) if self.pooling == "mean" else self.pooler(h)
        return classify(self, h, labels)


# --- the feature cache: the frozen prefix's output, computed once and kept on disk ---

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
    h.update(repr((type(hf_of(model)).__name__, model.config.to_json_string(), k,
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
        h = prefix(model, k, pooling, b["input_ids"].to(dev), b["attention_mask"].to(dev))
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
        with devices.builder_threads(comm.size if comm is not None else 1):  # the others wait idle
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
           ) -> tuple[Upper, TextData]:
    """(the trainable upper module, the data as cached features) for `model.cache_features`."""
    k = resolve(model, cfg.frozen)
    assert k is not None  # the config requires a frozen part with the cache
    check_cacheable(model, k, cfg.pooling)
    base = model.base_model
    prefix_modules = [base] if k == "all" else [base.embeddings, *encoder_layers(model)[:k]]
    train, ev = (features(model, split, cfg, k, prefix_modules, comm) for split in (td.train, td.eval))
    return Upper(model, k, cfg.pooling), replace(td, train=train, eval=ev)
