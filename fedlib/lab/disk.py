"""Disk a job can afford: a per-run size model (what a run will write, from its config and its
model's parameter counts) and `used` (what an invocation actually wrote), so `fedlib reproduce`
can print both and a quota is checked before hours of sweeps, not after.

Size model of one run folder (float32 everywhere fedlib writes tensors):
- `checkpoint.pt` (only with `federation.checkpoint_every > 0`; one file, replaced each time):
  trainable params x 4 bytes x (1 + the server optimizer's moments: FedAdam/Yogi/Adagrad 2,
  FedAvgM 1, FedAvg/FedProx 0);
- `residuals/` (only with `federation.error_feedback`): one trainable-sized file per client that
  is sampled again (fedlib.record.residuals), at its peak;
- `model/` (only with `federation.export`, never for a random-init preset): all params x 4 bytes
  plus the tokenizer files;
- the CSVs and JSON: a row per round, a row per round x client, a row per client, a few KB.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import config
from ..record import residuals

FLOAT = 4  # bytes per stored weight
MOMENTS = {"fedavg": 0, "fedprox": 0, "fedavgm": 1, "fedadam": 2, "fedyogi": 2, "fedadagrad": 2}
# Measured on this repository's runs (a tiny BERT and MiniLM; tests/lab/test_disk.py checks them):
ROUND_ROW, CLIENT_ROW, PARTITION_ROW = 450, 80, 60  # bytes per CSV row
FIXED = 4_000  # config.yaml, summary.json with provenance, CSV headers
TOKENIZER = 750_000  # tokenizer.json + configs of an exported model folder (MiniLM: 713 kB)


def run_bytes(cfg: config.RunConfig, params: int, trainable: int | None = None) -> int:
    """Bytes `cfg`'s run folder holds at its fullest (see the module docstring): when it ends,
    but for the residuals, which are gone after the last round. `params`: the
    model's parameter count; `trainable`: what travels and is checkpointed (default: all)."""
    from ..learn.models import locate

    fed = cfg.federation
    trainable = params if trainable is None else trainable
    n = fed.num_clients
    drawn = max(1, round(n * fed.fraction))  # clients.csv: one row per client drawn per round
    size = FIXED + fed.rounds * ROUND_ROW + fed.rounds * drawn * CLIENT_ROW + n * PARTITION_ROW
    if fed.checkpoint_every > 0:
        size += trainable * FLOAT * (1 + MOMENTS.get(cfg.strategy.algorithm, 2))
    if fed.error_feedback:
        size += residuals.carried(cfg) * trainable * FLOAT
    if fed.export and locate(cfg.model.name).kind != "preset":
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


def param_count(name: str, overrides: dict | None = None) -> int:
    """Parameters of model `name` (a preset, "minilm", a local folder; a hub id is counted as the
    preset of the same base name when offline), built on torch's meta device: no memory, ~1 s."""
    import torch
    from transformers import AutoConfig, AutoModel

    from ..learn.models import PRESETS, locate, preset_config

    base = name.rsplit("/", 1)[-1]
    spec = locate(base if base in PRESETS and not Path(name).is_dir() else name)
    cfg = (preset_config(spec.source, overrides) if spec.kind == "preset"
           else AutoConfig.from_pretrained(spec.source, **(overrides or {})))
    with torch.device("meta"):
        return sum(p.numel() for p in AutoModel.from_config(cfg).parameters())


def _runs(name: str, p: dict) -> list[tuple[int, dict]]:
    """(count, size-relevant overrides) of the runs notebook `name` starts with parameters `p` —
    the notebooks' grids counted, not run. Sweeps export nothing (their runs set no `export`)."""
    sweep = {"federation.checkpoint_every": 0, "federation.export": False}
    seeds = len(p.get("seeds", [0]))
    if name == "00_quickstart":  # one run, checkpointed, exported: the CLI's defaults
        return [(1, {"config_file": p["config_file"], **p["overrides"]})]
    if name == "01_comm_scaling":  # `bench comm` starts no runs: a few CSVs and a figure
        return []
    if name == "02_accuracy_vs_clients":
        n = len(p["algorithms"]) * len(p["partitions"]) * seeds
        return [(n, {**sweep, "model.name": m, "federation.num_clients": c, "federation.rounds": p["rounds"],
                     **{k: v for k, v in p["setup"].items() if k.startswith("model.")}})
                for m in p["models"] for c in p["clients"]]
    if name in ("03_heterogeneity", "04_dropout"):  # per tier (lab.accuracy): its own axis and seeds
        axis = "settings" if name == "03_heterogeneity" else "dropouts"
        return [(len(t.get(axis, p[axis])) * len(t["seeds"]),
                 {**sweep, "model.name": {**p["setup"], **t["setup"]}.get("model.name", "minilm"),
                  "federation.num_clients": p["num_clients"], "federation.rounds": p["rounds"],
                  **{k: v for k, v in t["setup"].items() if k.startswith("model.")}})
                for t in p["tiers"]]
    if name == "05_privacy":
        n = 1 + len(p["client_epsilons"])
        tier = p.get("dpsgd_tier") or None  # its non-private reference is 03's run: not counted
        return [(n * seeds, {**sweep, "model.name": "minilm", "federation.num_clients": p["num_clients"],
                             "federation.fraction": p["fraction"], "federation.rounds": p["rounds"]}),
                ((1 + len(p["sample_epsilons"])) * seeds,
                 {**sweep, "model.name": "minilm", "federation.num_clients": p["dpsgd_clients"],
                  "federation.rounds": p["dpsgd_rounds"]})] + ([] if tier is None else [
                (len(tier["epsilons"]) * len(tier["tier"]["seeds"]),
                 {**sweep, "model.name": "minilm", "federation.num_clients": tier["num_clients"],
                  "federation.rounds": tier["rounds"],
                  **{k: v for k, v in tier["tier"]["setup"].items() if k.startswith("model.")}})])
    if name == "06_system_strategies":
        def run(model: str, clients: int, ef: bool) -> dict:
            # error feedback: one residual file per client (bf16 payloads on the star)
            return {**sweep, "model.name": model, "federation.num_clients": clients, "federation.rounds": 3,
                    "federation.error_feedback": ef, "federation.payload_dtype": "bf16" if ef else "fp32",
                    "federation.aggregation": "p2p" if ef else "collective"}
        timing = [(seeds if s in ("collective (baseline)", "p2p star") else 1, run(p["model"], c, "EF" in s))
                  for s in p["strategies"] for c in p["clients"]]
        return timing + [(seeds, run("minilm", 8, "EF" in a)) for a in p["accuracy_runs"]]
    if name == "07_benchmarks" and p.get("run_benchmarks") and "overhead" in p.get("benchmarks", []):
        # the one benchmark run that checkpoints (every round, into one file); the rest write CSVs
        return [(1, {"model.name": "minilm", "federation.export": False, "federation.num_clients": 4,
                     "federation.rounds": 6})]
    return []  # 07 reads benchmark tables unless asked to run them; 99 runs nothing


REPO = Path(__file__).resolve().parent.parent.parent


def estimate(profile: str, names: list[str], params_dir: Path) -> tuple[int, int, int]:
    """(runs, bytes at the end, peak bytes of the largest single run) that `names` of `profile`
    will write, from the size model: what to compare with a quota before a long job."""
    import yaml

    counts: dict[tuple[str, str], int] = {}
    runs = total = peak = 0
    for name in names:
        path = params_dir / profile / f"{name}.yaml"
        p = yaml.safe_load(path.read_text()) if path.is_file() else {}
        for n, over in _runs(name, p or {}):
            file = over.pop("config_file", None)
            cfg = config.load(REPO / file if file else None, {"output_dir": "/nonexistent", **over})
            key = (cfg.model.name, repr(cfg.model.overrides))
            if key not in counts:
                counts[key] = param_count(cfg.model.name, cfg.model.overrides)
            size = run_bytes(cfg, counts[key])
            peak = max(peak, size)
            if cfg.federation.error_feedback and not cfg.federation.checkpoint_every:
                size = run_bytes(config.replace(cfg, **{"federation.error_feedback": False}), counts[key])
            runs, total = runs + n, total + n * size
    return runs, total, peak
