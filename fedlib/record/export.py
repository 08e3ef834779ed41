"""A run's global model as a Hugging Face folder that `AutoModelForSequenceClassification
.from_pretrained` loads (weights, config with the data set's label names, tokenizer), or, with
`adapter=True`, the LoRA adapter alone for peft's `PeftModel.from_pretrained`.

The model is rebuilt from the run's config and the flat global weights are set into it, so the end
of a run and `python -m fedlib export RUN_DIR OUT` (any checkpoint, later) share one path: what
does not travel (frozen or pretrained tensors, a preset's seeded init) comes back from the config.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from .. import config
from ..learn import data, models
from ..wire.flat import FlatParams
from . import checkpoint

FOLDER = "model"  # <run_dir>/model: written at the end of a run (federation.export)


def unsupported(cfg: config.RunConfig) -> str | None:
    """Why this run's model has no Hugging Face folder form, or None."""
    if cfg.model.pooling != "cls":
        return (f"model.pooling={cfg.model.pooling!r} is fedlib's own head; transformers' sequence "
                "classifiers pool the first token, so from_pretrained could not rebuild it")
    return None


def write(cfg: config.RunConfig, weights: torch.Tensor, label_names: Sequence[str], out: Path,
          adapter: bool = False, spec: models.ModelSpec | None = None) -> Path:
    """Write the model that `weights` (the flat trainable parameters) describe to `out`, replacing
    it whole (written beside it, then renamed: an interrupted export leaves the old one).
    `spec`: model.name as the run resolved it (resolved here when not given)."""
    spec = spec or models.locate(cfg.model.name)
    if adapter and not cfg.model.lora_r:
        raise ValueError("--adapter: the run has no LoRA adapter (model.lora_r is 0); export the "
                         "whole model instead")
    if adapter and spec.kind == "preset":
        raise ValueError(f"--adapter: model.name={cfg.model.name!r} is a random-init preset, a base "
                         "model that exists nowhere else; export the merged model instead")
    if why := unsupported(cfg):
        raise ValueError(f"cannot export: {why}")
    _check_out(Path(out), allow_full=True)
    model = models.build(cfg.model, num_labels=len(label_names), seed=cfg.seed, spec=spec)
    FlatParams(model).set(weights.detach().to("cpu", torch.float32))
    tokenizer = models.load_tokenizer(cfg.model, spec)
    _warn_folded_vocab(cfg, tokenizer, spec)
    out = Path(out)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise ValueError(f"{out}: cannot be written ({e.strerror})") from None
    if adapter:
        model.save_pretrained(tmp)  # peft: adapter_config.json + adapter weights (+ the classifier)
        (tmp / data.LABELS).write_text(json.dumps(list(label_names)))
    else:
        hf = _plain(model)
        hf.config.id2label = dict(enumerate(label_names))
        hf.config.label2id = {n: i for i, n in enumerate(label_names)}
        hf.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def export_run(run_dir: Path, out: Path, adapter: bool = False) -> Path:
    """Export the last checkpoint of `run_dir` (its weights and the config they were trained with)."""
    out, run_dir = Path(out), Path(run_dir)
    _check_out(out, allow_full=False)
    if not (run_dir / checkpoint.FILE).is_file():
        raise FileNotFoundError(f"{run_dir / checkpoint.FILE}: no checkpoint to export (the run wrote none: "
                                "federation.checkpoint_every: 0, or it stopped before its first one); a run "
                                f"with federation.export: true left its final model in {run_dir / FOLDER}")
    state, saved = checkpoint.load(run_dir)
    cfg = config.from_dict(saved)
    return write(cfg, state.weights, label_names(run_dir, cfg), out, adapter)


def label_names(run_dir: Path, cfg: config.RunConfig) -> list[str]:
    """The run folder's labels.json (written when the run starts); a run folder from before
    fedlib kept it falls back on the data set, which must then still be where the run found it."""
    if (run_dir / data.LABELS).is_file():
        return data.read_label_names(run_dir / data.LABELS)
    try:
        return data.load_texts(cfg.data)[1]
    except ValueError as e:  # DataError, ConfigError
        raise ValueError(f"{run_dir}: has no {data.LABELS} (a run from an older fedlib) and its data "
                         f"set cannot give the label names: {e}") from None


def _check_out(out: Path, allow_full: bool) -> None:
    """`out` must be (or become) a folder: a file there, or a file above it, is refused in one line
    rather than as an OSError from deep inside save_pretrained."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; export writes a folder, so give a path that does not exist")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"{out}: cannot be created, {above} is a file")
    if not allow_full and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; export into a new folder")


def _plain(model: nn.Module) -> PreTrainedModel:
    """The transformers model itself: LoRA merged into the base weights, peft wrappers gone."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if not isinstance(model, PreTrainedModel):
        raise ValueError(f"{type(model).__name__} is not a transformers model class, so "
                         "from_pretrained could not load it; export needs a standard HF head")
    return model


def _warn_folded_vocab(cfg: config.RunConfig, tokenizer: object, spec: models.ModelSpec) -> None:
    vocab = models.preset_vocab(cfg.model, spec)
    if vocab is not None and vocab < len(tokenizer):  # type: ignore[arg-type]
        warnings.warn(f"model.name={cfg.model.name!r}: the preset's vocabulary ({vocab}) is smaller "
                      f"than its tokenizer's ({len(tokenizer)}); the run folded token ids into it, "  # type: ignore[arg-type]
                      "so the exported tokenizer's ids must be folded too (id % vocab_size)", stacklevel=2)
