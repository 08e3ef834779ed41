"""The frozen lower part of a classifier and the trainable part above it.

`model.freeze_layers: k` freezes the embeddings and the first k encoder layers (k = 0: the
embeddings only; `all`: the whole encoder including its pooler, so only the head trains).
Frozen means frozen: those modules also stay in eval mode (no dropout) when the model is put
in train mode, so the frozen prefix is a fixed function of the input — which is what makes
caching its output (fedlib.cache) exact, and what a frozen feature extractor should be.

`Upper` is the trainable part as a module of its own (the same parameter objects, in the same
order as in the full model), run from cached hidden states: what clients train when
`model.cache_features` is on.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .config import ConfigError

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
