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

from .config import DataConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class DataError(ValueError):
    """Malformed data; the message names the file and line."""


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


def read_jsonl(path: Path, num_labels: int) -> tuple[list[str], list[int]]:
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
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise DataError(f'{path}:{lineno}: expected an object with "text" and "label"')
            text, label = row["text"], row["label"]
            if not isinstance(text, str) or not text:
                raise DataError(f"{path}:{lineno}: 'text' must be a non-empty string")
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_labels:
                raise DataError(
                    f"{path}:{lineno}: 'label' must be an integer in [0, {num_labels}), "
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
        label_file = folder / "labels.json"
        try:
            names = json.loads(label_file.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{label_file}:{e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(names, list) or not names:
            raise DataError(f"{label_file}: must be a non-empty JSON list of label names")
        out = {}
        for s in splits:
            p = folder / f"{s}.jsonl"
            if not p.is_file():
                raise DataError(f"{p}: missing (data.name={cfg.name!r})")
            out[s] = read_jsonl(p, len(names))
        return out, [str(n) for n in names]
    return _load_hub(cfg, splits)


def _load_hub(cfg: DataConfig, splits: tuple[str, ...]) -> Any:
    """A `datasets` id or saved dataset path with `text`/`label` columns (ClassLabel)."""
    import datasets

    try:
        if (Path(cfg.name) / "dataset_dict.json").is_file():  # a `save_to_disk` folder
            ds = datasets.load_from_disk(cfg.name)
        else:
            ds = datasets.load_dataset(cfg.name)
    except Exception as e:  # noqa: BLE001 - re-raised with the key that caused it
        where = ", ".join(str(p) for p in search_path())
        raise DataError(
            f"data.name={cfg.name!r}: not a folder with labels.json under [{where}] "
            f"and not loadable with datasets.load_dataset ({type(e).__name__}: {e})"
        ) from None
    alias = {"dev": ["validation", "dev"], "test": ["test"], "train": ["train"]}
    feature = ds["train"].features["label"]
    names = list(getattr(feature, "names", [])) or sorted({int(x) for x in ds["train"]["label"]})
    out = {}
    for s in splits:
        split = next((a for a in alias[s] if a in ds), None)
        if split is None:
            raise DataError(f"data.name={cfg.name!r}: no {s!r} split (has {list(ds)})")
        out[s] = (list(ds[split]["text"]), [int(x) for x in ds[split]["label"]])
    return out, [str(n) for n in names]


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


def _cache_dir() -> Path:
    return Path(os.environ.get("FEDLIB_CACHE", Path.home() / ".cache" / "fedlib"))


def load(cfg: DataConfig, tokenizer: Any, vocab_size: int | None = None) -> TextData:
    """Tokenized train and eval splits, cached on disk by (data, tokenizer, max_length)."""
    raw, names = load_texts(cfg)
    out: dict[str, TextSplit] = {}
    for split, (texts, labels) in raw.items():
        key = hashlib.sha256(
            json.dumps([texts, labels, tokenizer.name_or_path, len(tokenizer), cfg.max_length,
                        vocab_size]).encode()
        ).hexdigest()[:24]
        path = _cache_dir() / f"tok-{key}.pt"
        if path.is_file():
            ids, lengths, y = torch.load(path, weights_only=True)
            ts = TextSplit(ids, lengths, y)
        else:
            ts = tokenize(texts, labels, tokenizer, cfg.max_length, vocab_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save((ts.input_ids, ts.lengths, ts.labels), tmp)
            os.replace(tmp, path)
        out[split] = ts
    train = out["train"]
    ev = out[cfg.eval_split]
    if cfg.max_train_samples is not None:
        train = train.subset(torch.arange(min(cfg.max_train_samples, len(train))))
    if cfg.max_eval_samples is not None:
        ev = ev.subset(torch.arange(min(cfg.max_eval_samples, len(ev))))
    return TextData(train, ev, tuple(names))
