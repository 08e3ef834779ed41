"""System-aware strategies, each on/off on the same work: bytes per round and
communicate+wait seconds on 2 MPI ranks for the plain collective baseline, the p2p star, and
each strategy (frozen lower half, LoRA, bf16 payload (+ error feedback) on the star, balanced
placement under quantity skew), at several client counts; plus the scaling-model fit of the
collective/p2p rows. bert-base preset (random init: time and bytes do not depend on weights),
one short local step per client. Accuracy effects (LoRA vs full, bf16 vs fp32) are measured on
MiniLM in `accuracy_rows`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .. import config, scaling

STRATEGIES: dict[str, dict[str, Any]] = {
    "collective (baseline)": {},
    "p2p star": {"federation.aggregation": "p2p"},
    "freeze lower half": {"model.freeze": "lower_half"},
    "LoRA r=8": {"model.lora_r": 8},
    "bf16 p2p": {"federation.aggregation": "p2p", "federation.payload_dtype": "bf16"},
    "bf16+EF p2p": {"federation.aggregation": "p2p", "federation.payload_dtype": "bf16",
                    "federation.error_feedback": True},
    "quantity skew, round-robin": {"partition.kind": "quantity", "partition.sigma": 1.5,
                                   "client.local_steps": None, "client.local_epochs": 1},
    "quantity skew, balanced": {"partition.kind": "quantity", "partition.sigma": 1.5,
                                "client.local_steps": None, "client.local_epochs": 1,
                                "federation.placement": "balanced"},
}


def timing_base(out: Path, max_clients: int, model: str = "bert-base-uncased") -> config.RunConfig:
    """Short rounds whose time is what the federation adds: 4 samples per client on average."""
    return config.load(None, {
        "name": "system", "output_dir": str(out / "runs"), "model.name": model,
        "data.max_length": 16, "data.max_train_samples": 4 * max_clients,
        "client.batch_size": 2, "client.local_steps": 1, "client.optimizer": "sgd", "client.lr": 1e-3,
        "federation.rounds": 2, "federation.eval_every": 0, "federation.checkpoint_every": 0,
        "partition.min_samples": 2,
    })


def timing_grid(clients: list[int], strategies: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"strategy": s, "federation.num_clients": n, **STRATEGIES[s]}
            for s in (strategies or list(STRATEGIES)) for n in clients]


def accuracy_grid() -> list[dict[str, Any]]:
    bf16 = {"federation.payload_dtype": "bf16"}
    return [{"strategy": "full fine-tuning fp32"},
            {"strategy": "LoRA r=8", "model.lora_r": 8, "client.lr": 2e-3},
            {"strategy": "bf16 payload", **bf16},
            {"strategy": "bf16+EF payload", **bf16, "federation.error_feedback": True}]


def accuracy_base(out: Path, quick: bool) -> config.RunConfig:
    return config.load(None, {
        "name": "system-acc", "output_dir": str(out / "runs"), "model.name": "minilm", "data.max_length": 64,
        "data.max_train_samples": 480 if quick else 960, "data.max_eval_samples": 200 if quick else 400,
        "client.lr": 5e-4, "client.local_epochs": 2, "federation.num_clients": 8,
        "federation.rounds": 2 if quick else 3, "federation.checkpoint_every": 0,
    })


def with_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """comm+wait and bytes relative to the collective baseline and to the p2p star, per client count."""
    ref = df.set_index(["strategy", "clients"])
    out = df.copy()
    for name, col in (("collective (baseline)", "vs_collective"), ("p2p star", "vs_p2p")):
        if name in ref.index.get_level_values(0):
            base = ref.loc[name]
            out[f"comm_wait_{col}"] = out["comm_wait_s"] / out["clients"].map(base["comm_wait_s"])
            out[f"bytes_{col}"] = out["bytes_per_round"] / out["clients"].map(base["bytes_per_round"])
    return out


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    from ..engines import start

    clients = [4, 16] if quick else [8, 32, 96]
    with start("mpi", n=2) as pool:
        timing = with_ratios(pool.sweep(timing_base(out, max(clients)), timing_grid(clients), desc="system"))
        acc = pool.sweep(accuracy_base(out, quick), accuracy_grid(), desc="system accuracy")
    fit = scaling.fit(timing[timing["strategy"].isin(["collective (baseline)", "p2p star"])])
    fit.to_csv(out / "system_fit.csv", index=False)
    acc.to_csv(out / "system_accuracy.csv", index=False)
    return timing
