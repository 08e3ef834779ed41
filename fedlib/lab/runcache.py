"""Reuse a sweep's finished runs: a run is keyed by what decides its numbers, so that
`fedlib reproduce` after a change to one notebook reruns only the runs that changed, and a run
that several notebooks need (the IID reference of 02, 03 and 04: one configuration) runs once.

The key hashes
- the resolved config, its `name` and `output_dir` left out (they say where a run is written,
  not what it computes); the seed is part of it;
- the number of ranks that ran it (its timings depend on it);
- the fedlib source (every .py file under fedlib/: any edit invalidates every entry);
- the libraries that compute (torch, transformers, opacus, peft, numpy versions);
- the local data set's files (a regenerated split is another run).

An entry is `<root>/<key>.json`: the run's row as `sweep.summarize` makes it (the grid's labels
left out: each sweep adds its own), the run's folder and how long it took. It is reused only
while that folder still holds the run's `summary.json` (the notebooks read its CSVs). The root is
`$FEDLIB_RUN_CACHE`, set by `fedlib reproduce`; unset, nothing is cached or reused, so a notebook
opened by hand reruns every run. Each run a sweep makes or reuses is one line of
`$FEDLIB_RUN_LOG` (JSON), which `reproduce` counts to say what it reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from .. import config
from ..hpc.store import atomic_write
from ..record.provenance import SOURCE, _version

ENV = "FEDLIB_RUN_CACHE"
LOG_ENV = "FEDLIB_RUN_LOG"
WHERE = ("name", "output_dir")  # config keys that place a run, not what it computes
LIBRARIES = ("torch", "transformers", "opacus", "peft", "numpy")


@functools.cache
def source_digest(root: Path = SOURCE) -> str:
    """sha256 over every .py file under `root` (path and bytes, in path order)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def libraries() -> tuple[tuple[str, str | None], ...]:
    return tuple((pkg, _version(pkg)) for pkg in LIBRARIES)


@functools.cache
def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def data_digest(d: config.DataConfig) -> str | None:
    """The local data set's files (None: a hub id, known by its name alone)."""
    from ..learn import data

    folder = data.resolve(d.name, d.subset)
    return _folder_digest(folder.resolve()) if folder is not None and folder.is_dir() else None


def key(cfg: config.RunConfig, ranks: int, source: str | None = None) -> str:
    """The run's cache key (`source`: the fedlib source digest, default this checkout's)."""
    what = {k: v for k, v in cfg.to_dict().items() if k not in WHERE}
    payload = {"config": what, "ranks": ranks, "source": source or source_digest(),
               "libraries": libraries(), "data": data_digest(cfg.data)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _plain(v: Any) -> Any:
    """A row value as JSON keeps it (numpy scalars as Python numbers; NaN stays NaN)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


class Store:
    """The entries under one root folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_env(cls) -> Store | None:
        root = os.environ.get(ENV)
        return cls(root) if root else None

    def get(self, k: str) -> dict[str, Any] | None:
        """The entry of key `k` (`row`, `run_dir`, `seconds`), or None (no entry, or its run
        folder is gone)."""
        path = self.root / f"{k}.json"
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not (Path(entry["run_dir"]) / "summary.json").is_file():
            return None
        return dict(entry)

    def put(self, k: str, row: dict[str, Any], cfg: config.RunConfig, seconds: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"key": k, "run_dir": str(cfg.run_dir), "seconds": round(seconds, 3),
                 "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "row": {c: _plain(v) for c, v in row.items()}}
        atomic_write(self.root / f"{k}.json", json.dumps(entry, default=str))


def log(sweep: str, name: str, reused: bool, seconds: float, run_dir: str) -> None:
    """One line of `$FEDLIB_RUN_LOG` per run (unset: nothing written)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = {"sweep": sweep, "run": name, "reused": reused, "seconds": round(seconds, 3), "run_dir": run_dir}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


def tally(path: Path) -> tuple[int, int, float]:
    """(runs, reused, seconds the reused runs took when they ran) from a run log; zeros if none."""
    runs = reused = 0
    saved = 0.0
    if path.is_file():
        for text in path.read_text().splitlines():
            line = json.loads(text)
            runs += 1
            if line["reused"]:
                reused += 1
                saved += float(line["seconds"]) if math.isfinite(line["seconds"]) else 0.0
    return runs, reused, saved
