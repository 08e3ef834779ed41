"""Disk a job can afford: a per-run size model (what a run will write, from its config and its
model's parameter counts) and `used` (what an invocation actually wrote), so `fedlib reproduce`
can print both and a quota is checked before hours of sweeps, not after.

Size model of one run folder (float32 everywhere fedlib writes tensors):
- `checkpoint.pt` (only with `federation.checkpoint_every > 0`; one file, replaced each time):
  trainable params x 4 bytes x (1 + the server optimizer's moments: FedAdam/Yogi/Adagrad 2,
  FedAvgM 1, FedAvg/FedProx 0);
- `residuals/` (only with `federation.error_feedback`): one trainable-sized file per client;
- `model/` (only with `federation.export`, never for a random-init preset): all params x 4 bytes
  plus the tokenizer files;
- the CSVs and JSON: a row per round, a row per round x client, a row per client, a few KB.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import config

FLOAT = 4  # bytes per stored weight
MOMENTS = {"fedavg": 0, "fedprox": 0, "fedavgm": 1, "fedadam": 2, "fedyogi": 2, "fedadagrad": 2}
# Measured on this repository's runs (a tiny BERT and MiniLM; tests/test_lab_disk.py checks them):
ROUND_ROW, CLIENT_ROW, PARTITION_ROW = 450, 80, 60  # bytes per CSV row
FIXED = 4_000  # config.yaml, summary.json with provenance, CSV headers
TOKENIZER = 750_000  # tokenizer.json + configs of an exported model folder (MiniLM: 713 kB)


def run_bytes(cfg: config.RunConfig, params: int, trainable: int | None = None) -> int:
    """Bytes `cfg`'s run folder holds when it ends (see the module docstring). `params`: the
    model's parameter count; `trainable`: what travels and is checkpointed (default: all)."""
    from ..models import resolve

    fed = cfg.federation
    trainable = params if trainable is None else trainable
    n = fed.num_clients
    size = FIXED + fed.rounds * ROUND_ROW + fed.rounds * n * CLIENT_ROW + n * PARTITION_ROW
    if fed.checkpoint_every > 0:
        size += trainable * FLOAT * (1 + MOMENTS.get(cfg.strategy.algorithm, 2))
    if fed.error_feedback:
        size += n * trainable * FLOAT
    if fed.export and resolve(cfg.model.name).kind != "preset":
        size += params * FLOAT + TOKENIZER
    return size


def used(folder: Path, since: float) -> int:
    """Bytes of the files under `folder` written at or after `since` (a `time.time()`): what one
    invocation wrote, leaving out earlier records it moved aside (a move keeps the mtime)."""
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue  # removed while walking (a temp file)
            if st.st_mtime >= since - 1:
                total += st.st_size  # apparent size: what the files hold (du rounds up to blocks)
    return total


def human(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as quotas are quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover
