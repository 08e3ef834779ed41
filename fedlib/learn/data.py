"""Text-classification data: JSONL folders (`train/dev/test.jsonl` + `labels.json`) or a
Hugging Face `datasets` id, tokenized once (cached on disk) into padded id tensors.

Batches are cut to the longest sequence in the batch, so short scientific sentences do not
pay for `max_length` padding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, DataConfig
from ..hpc.store import (
    REPO_ROOT,
    atomic_write,
    build_once,
    cache_dir,
)  # noqa: F401 - data.* names kept

LABELS = "labels.json"  # the label names, a JSON list: in a data folder, and in every run folder


class DataError(ValueError):
    """Malformed data; the message names the file and line."""


def read_label_names(label_file: Path) -> list[str]:
    """The label names of a data folder's (or a run folder's) labels.json, id = position."""
    try:
        names = json.loads(label_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{label_file}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{label_file}: not UTF-8 text (byte {e.start})") from None
    if not isinstance(names, list) or not names:
        raise DataError(f"{label_file}: must be a non-empty JSON list of label names")
    return [str(n) for n in names]


def write_label_names(folder: Path, names: tuple[str, ...] | list[str]) -> Path:
    """Keep the label names in a run folder, so that exporting its model later (an id2label)
    needs the checkpoint's folder alone, not the data set, which may be gone or moved by then."""
    return atomic_write(folder / LABELS, json.dumps(list(names)) + "\n")


def search_path() -> list[Path]:
    """Where dataset names are looked up: $FEDLIB_DATA (colon-separated), data/, ../shared/data."""
    extra = [Path(p) for p in os.environ.get("FEDLIB_DATA", "").split(":") if p]
    return [*extra, REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]


def resolve(name: str, subset: str = "full") -> Path | None:
    """A local folder for `name` (a path or a name on the search path), or None (then: hub id)."""
    candidates = [Path(name)] if ("/" in name or Path(name).exists()) else []
    candidates += [root / name for root in search_path()]
    for c in candidates:
        if (c / "labels.json").is_file():
            return c / "tiny" if subset == "tiny" and (c / "tiny" / "labels.json").is_file() else c
    return None


def read_jsonl(path: Path, num_labels: int, text_key: str = "text", label_key: str = "label"
               ) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    labels: list[int] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[e.start : e.start + 1]
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {e.start}: {bad!r})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or text_key not in row or label_key not in row:
                raise DataError(f'{path}:{lineno}: expected an object with "{text_key}" and "{label_key}"')
            text, label = row[text_key], row[label_key]
            if not isinstance(text, str) or not text:
                raise DataError(f"{path}:{lineno}: '{text_key}' must be a non-empty string")
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_labels:
                raise DataError(
                    f"{path}:{lineno}: '{label_key}' must be an integer in [0, {num_labels}), "
                    f"got {label!r}"
                )
            texts.append(text)
            labels.append(label)
    if not texts:
        raise DataError(f"{path}: no examples")
    return texts, labels


def load_texts(cfg: DataConfig) -> tuple[dict[str, tuple[list[str], list[int]]], list[str]]:
    """{split: (texts, labels)} for train and the eval split, plus the label names."""
    splits = ("train", cfg.eval_split)
    folder = resolve(cfg.name, cfg.subset)
    if folder is not None:
        names = read_label_names(folder / LABELS)
        out = {}
        for s in splits:
            p = folder / f"{s}.jsonl"
            if not p.is_file():
                raise DataError(f"{p}: missing (data.name={cfg.name!r})")
            out[s] = read_jsonl(p, len(names), cfg.text_column, cfg.label_column)
        return out, names
    return _load_hub(cfg, splits)


def _load_hub(cfg: DataConfig, splits: tuple[str, ...]) -> Any:
    """A `datasets` id (with `data.config`) or a `save_to_disk` folder; its text and label columns
    are `data.text_column` / `data.label_column`."""
    import datasets

    try:
        if (Path(cfg.name) / "dataset_dict.json").is_file():  # a `save_to_disk` folder
            if cfg.config is not None:
                raise ConfigError(f"data.config={cfg.config!r}: {cfg.name} is a saved dataset, "
                                  "which has no configurations; leave data.config null")
            ds = datasets.load_from_disk(cfg.name)
        else:
            ds = datasets.load_dataset(cfg.name, cfg.config)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - re-raised with the key that caused it
        where = ", ".join(str(p) for p in search_path())
        raise DataError(
            f"data.name={cfg.name!r} (data.config={cfg.config!r}): not a folder with labels.json under "
            f"[{where}] and not loadable with datasets.load_dataset ({type(e).__name__}: {e})"
        ) from None
    alias = {"dev": ["validation", "dev"], "test": ["test"], "train": ["train"]}
    found = {}
    for s in splits:
        split = next((a for a in alias[s] if a in ds), None)
        if split is None:
            raise DataError(f"data.name={cfg.name!r}: no {s!r} split (has {list(ds)})")
        for key in ("text_column", "label_column"):
            col = getattr(cfg, key)
            if col not in ds[split].column_names:
                raise ConfigError(f"data.{key}={col!r}: {cfg.name} split {split!r} has no such column; "
                                  f"its columns are {ds[split].column_names}")
        found[s] = ds[split]
    names = label_names(found["train"], cfg.label_column)
    index = {n: i for i, n in enumerate(names)}
    out = {}
    for s, d in found.items():
        texts = [str(t) for t in d[cfg.text_column]]
        feature = d.features[cfg.label_column]
        raw = d[cfg.label_column]
        if isinstance(feature, datasets.ClassLabel):
            labels = [int(x) for x in raw]
        else:
            unknown = sorted({str(x) for x in raw} - set(index))
            if unknown:
                raise DataError(f"data.label_column={cfg.label_column!r}: split {s!r} has labels "
                                f"{unknown[:5]} that the train split lacks")
            labels = [index[str(x)] for x in raw]
        out[s] = (texts, labels)
    return out, names


def label_names(split: Any, column: str) -> list[str]:
    """A ClassLabel's names; else the distinct values in the train split, sorted (ints numerically,
    so labels 0..k-1 keep their ids), mapped to ids by position."""
    import datasets

    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return [str(n) for n in feature.names]
    values = set(split[column])
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return [str(v) for v in sorted(values)]
    return sorted(str(v) for v in values)


@dataclass(frozen=True)
class TextSplit:
    """Token ids padded to `max_length`, their lengths and labels; rows are examples."""

    input_ids: torch.Tensor  # (N, L) int64
    lengths: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.numel())

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        width = int(self.lengths[idx].max())
        ids = self.input_ids[idx, :width]
        mask = (torch.arange(width)[None, :] < self.lengths[idx][:, None]).long()
        return {"input_ids": ids, "attention_mask": mask, "labels": self.labels[idx]}

    def subset(self, idx: torch.Tensor) -> TextSplit:
        return TextSplit(self.input_ids[idx], self.lengths[idx], self.labels[idx])


@dataclass(frozen=True)
class TextData:
    train: TextSplit
    eval: TextSplit
    label_names: tuple[str, ...]
    eval_split_size: int | None = None  # examples in the whole eval split (`eval` may be its head)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def tokenize(texts: list[str], labels: list[int], tokenizer: Any, max_length: int,
             vocab_size: int | None = None) -> TextSplit:
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length",
                    return_tensors="pt")
    ids = enc["input_ids"].long()
    if vocab_size is not None and int(ids.max()) >= vocab_size:
        ids = ids % vocab_size  # random-init presets with a smaller vocabulary
    return TextSplit(ids, enc["attention_mask"].sum(1).long(), torch.tensor(labels, dtype=torch.long))


def load(cfg: DataConfig, tokenizer: Any, vocab_size: int | None = None, comm: Any = None
         ) -> TextData:
    """Tokenized train and eval splits, cached on disk by (data, tokenizer, max_length).

    With a multi-rank `comm`, the first rank of each node tokenizes and writes the cache while
    the others wait at a barrier and read it: a node-local cache is filled once per node, a
    shared one once (concurrent writers on other nodes each replace it atomically)."""
    raw, names = load_texts(cfg)
    out: dict[str, TextSplit] = {}
    for split, (texts, labels) in raw.items():
        key = hashlib.sha256(
            json.dumps([texts, labels, tokenizer.name_or_path, len(tokenizer), cfg.max_length,
                        vocab_size]).encode()
        ).hexdigest()[:24]
        path = cache_dir() / f"tok-{key}.pt"

        def write(tmp: Path, texts: list[str] = texts, labels: list[int] = labels) -> None:
            ts = tokenize(texts, labels, tokenizer, cfg.max_length, vocab_size)
            torch.save((ts.input_ids, ts.lengths, ts.labels), tmp)

        if build_once(path, write, comm):
            out[split] = TextSplit(*torch.load(path, weights_only=True))
        else:  # the cache could not be written (or is not shared with this node's writer)
            out[split] = tokenize(texts, labels, tokenizer, cfg.max_length, vocab_size)
    train = out["train"]
    ev = out[cfg.eval_split]
    if cfg.max_train_samples is not None:
        train = train.subset(torch.arange(min(cfg.max_train_samples, len(train))))
    split_size = len(ev)
    if cfg.max_eval_samples is not None:
        ev = ev.subset(torch.arange(min(cfg.max_eval_samples, len(ev))))
    return TextData(train, ev, tuple(names), split_size)
