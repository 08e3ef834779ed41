"""What a claim's runs trained, in words a reader of the claims table cannot misread: "linear probe
on frozen features (2,695 params)" is not "top-1 encoder layer + head (1.8M params)", and a
verdict about one does not transfer to the other (a probe is a convex problem; fine-tuning is not).

Built from what every per-run table already records (`sweep.budget` and the run's summary row):
`trainable` (head, full, LoRA rN, all but embeddings, layers above k | half), `params` (the
trainable parameters, as the run counted them) and `model`. How many encoder layers a model has,
and its hidden size, are read from the model's config (a preset's sizes, or the checkpoint's
config.json), unless the table carries `encoder_layers` / `hidden_size` columns itself.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import pandas as pd


def count(params: float) -> str:
    """2,695 · 74,883 · 297k · 1.8M · 110M: a parameter count as the table prints it."""
    if params < 100_000:
        return f"{int(params):,}"
    if params < 1_000_000:
        return f"{params / 1e3:.0f}k"
    return f"{params / 1e6:.1f}M" if params < 100e6 else f"{params / 1e6:.0f}M"


@cache
def shape(model: str) -> tuple[int, int] | None:
    """(encoder layers, hidden size) of a model name as `fedlib.models` resolves it; None when its
    config cannot be read here (a hub id not in the local cache)."""
    from ..learn import models  # torch and transformers: only when a table needs a model's shape

    name = models.ALIASES.get(model, model)
    if name in models.PRESETS:
        sizes = models.PRESETS[name][1]
        return int(sizes["num_hidden_layers"]), int(sizes["hidden_size"])
    try:
        folder = Path(models.locate(name).source)
    except Exception:  # noqa: BLE001 - any failure to locate means "unknown shape", never an error
        return None
    path = folder / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        path = Path(cached) if isinstance(cached, str) else path
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    layers, hidden = cfg.get("num_hidden_layers", cfg.get("n_layers")), cfg.get("hidden_size", cfg.get("dim"))
    return (int(layers), int(hidden)) if layers and hidden else None


def describe(trainable: str, params: float | None, layers: int | None = None,
             hidden: int | None = None) -> str:
    """One trainable part in words, with its parameter count (`layers`, `hidden`: the encoder's
    depth and width, None when unknown: the text then names the setting without them)."""
    n = f" ({count(params)} params)" if params is not None and math.isfinite(params) else ""
    if trainable == "head":
        # a linear head has labels × (hidden + 1) params; a dense pooler in front of it adds
        # hidden × (hidden + 1), which would read as ≥ hidden "labels"
        linear = (params is not None and hidden is not None and math.isfinite(params)
                  and params % (hidden + 1) == 0 and 0 < params // (hidden + 1) < hidden)
        return ("linear probe on frozen features" if linear else "classifier head on a frozen encoder") + n
    if trainable == "full":
        return "whole model" + n
    if trainable.startswith("LoRA r"):
        return f"LoRA r={trainable[len('LoRA r'):]} adapters + head" + n
    if trainable == "all but embeddings":
        return (f"all {layers} encoder layers + head" if layers else "encoder + head (embeddings frozen)") + n
    if trainable.startswith("layers above "):
        k = trainable[len("layers above "):]
        if layers and (k == "half" or k.isdigit()):
            top = layers - (layers // 2 if k == "half" else int(k))
            return f"top-{top} encoder layer{'s' * (top != 1)} + head" + n
        return f"encoder layers above {k} + head" + n
    return trainable + n


def _one(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    params = float(rows["params"].max()) if "params" in rows and rows["params"].notna().any() else None
    known = shape(str(first["model"])) if "model" in rows and pd.notna(first["model"]) else None
    layers = int(first["encoder_layers"]) if "encoder_layers" in rows else known[0] if known else None
    hidden = int(first["hidden_size"]) if "hidden_size" in rows else known[1] if known else None
    return describe(str(first["trainable"]), params, layers, hidden)


def text(rows: pd.DataFrame) -> str:
    """What the runs in `rows` trained: one description per (model, trainable part), joined by
    ' / ' when a table mixes them; '?' when `rows` has no `trainable` column."""
    if "trainable" not in rows or not len(rows) or rows["trainable"].isna().all():
        return "?"
    keys = [k for k in ("model", "trainable") if k in rows]
    parts = [_one(g) for _, g in rows.dropna(subset=["trainable"]).groupby(keys, sort=False)]
    return " / ".join(dict.fromkeys(parts))
