"""The payloads `bench comm` times: what one client sends in the study's settings, from the real
architectures' configs. Each is counted as fedlib would send it — the trainable parameters of
`models.build` for those overrides (freezing, LoRA, pooling included) — on PyTorch's meta device,
so no weights are allocated and no model is trained: the benchmark moves a flat float32 buffer of
that many values.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import config

# What travels, by setting. The head and the top layer are the lab's accuracy rows (MiniLM with
# mean pooling on cached features); LoRA r8 on BERT-base's query/value projections is the adapter
# of notebook 06; the rest are whole models (the study's ALBERT / BERT / DeBERTa base).
PAYLOADS: dict[str, dict[str, Any]] = {
    "head (MiniLM probe)": {"model.name": "minilm", "model.freeze_layers": "all", "model.pooling": "mean"},
    "LoRA r8 (BERT-base)": {"model.name": "bert-base-uncased", "model.lora_r": 8},
    "top-1 layer + head (MiniLM)": {
        "model.name": "minilm",
        "model.freeze_layers": 5,
        "model.pooling": "mean",
    },
    "ALBERT-base": {"model.name": "albert-base-v2"},
    "MiniLM": {"model.name": "minilm"},
    "BERT-base": {"model.name": "bert-base-uncased"},
    "DeBERTa-v3-base": {"model.name": "deberta-v3-base"},
}
LABELS = 7  # the lab's accuracy task (mag, 7 fields of study): the classifier head's width


@cache
def trainable(name: str, labels: int = LABELS) -> int:
    """Trainable parameters of payload `name` (a key of `PAYLOADS`): the floats one update carries."""
    import torch

    from ..learn import models

    if name not in PAYLOADS:
        raise KeyError(f"payload {name!r}: not one of {sorted(PAYLOADS)} (fedlib.bench.payloads)")
    cfg = config.load(None, {**PAYLOADS[name], "model.pretrained": False})  # architecture only
    with torch.device("meta"):
        model = models.build(cfg.model, labels, seed=0)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sizes(names: list[str], labels: int = LABELS) -> dict[str, int]:
    """{name: trainable parameters}, in the given order."""
    return {n: trainable(n, labels) for n in names}
