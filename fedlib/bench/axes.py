"""The study's axes on real data: MiniLM on scicite, 16 clients, FedAvg, the same rounds for
every setting. Test accuracy under label skew (Dirichlet α), dropout, and differential
privacy (client-level at ε≈8 and ε≈2, sample-level DP-SGD at ε≈8), each with its ε; and the
DP-SGD time per local step against the same run without DP.

Client-level DP adds noise of norm ~σC/m·sqrt(d) to an update of norm ≤ C: with m = 16
clients and d = 22.7M parameters nothing survives, so those rows (and their no-DP reference)
train only the classifier head (`model.freeze: all_but_head`). DP-SGD rows freeze the
embeddings (per-example gradients of the 30k×384 word embeddings would dominate).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import config
from ..lab import sweep
from .system import LORA_LR

HEAD = {"model.freeze": "all_but_head", "client.lr": 1e-2}
EMB = {"model.freeze": "embeddings"}
LORA = {"model.lora_r": 8, "client.lr": LORA_LR}


def grid() -> list[dict]:
    g: list[dict] = [{"axis": "heterogeneity", "setting": "iid"}]
    g += [{"axis": "heterogeneity", "setting": f"dirichlet a={a}", "partition.kind": "dirichlet",
           "partition.alpha": a} for a in (1.0, 0.3, 0.1)]
    g += [{"axis": "dropout", "setting": f"p={p}", "participation.dropout": p,
           "participation.dropout_when": "mid"} for p in (0.2, 0.5)]
    g += [{"axis": "privacy", "setting": "none (head only)", **HEAD}]
    g += [{"axis": "privacy", "setting": f"client eps={e} (head only)", **HEAD, "privacy.mode": "client",
           "privacy.target_epsilon": e, "privacy.clip": 0.1} for e in (8.0, 2.0)]
    g += [{"axis": "privacy", "setting": "none (embeddings frozen)", **EMB}]
    g += [{"axis": "privacy", "setting": "sample eps=8 (embeddings frozen)", **EMB, "privacy.mode": "sample",
           "privacy.target_epsilon": 8.0}]
    return g + lora_dp_grid()


def lora_dp_grid() -> list[dict]:
    """DP-SGD on LoRA adapters (peft) against the same LoRA run without DP."""
    return [{"axis": "privacy", "setting": "none (LoRA r8)", **LORA},
            {"axis": "privacy", "setting": "sample eps=8 (LoRA r8)", **LORA, "privacy.mode": "sample",
             "privacy.target_epsilon": 8.0}]


def base(out: Path, quick: bool) -> config.RunConfig:
    return config.load(None, {
        "name": "axes", "output_dir": str(out / "runs"), "model.name": "minilm",
        "data.max_length": 64, "data.max_train_samples": 640 if quick else 960,
        "data.max_eval_samples": 200 if quick else 400,
        "client.lr": 5e-4, "client.batch_size": 16, "client.local_epochs": 2,
        "federation.num_clients": 16, "federation.rounds": 2 if quick else 3,
        "federation.eval_every": 2 if quick else 3, "federation.checkpoint_every": 0,
    })


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    df = sweep.run_grid(base(out, quick), grid(), desc="axes")
    return with_dpsgd_overhead(df)


def with_dpsgd_overhead(df: pd.DataFrame) -> pd.DataFrame:
    """DP-SGD seconds per local step ÷ the same setting's without DP ("sample eps=8 (X)" vs "none (X)")."""
    df = df.copy()
    nan = pd.Series(float("nan"), index=df.index)
    df["epsilon_reported"] = df.get("epsilon", nan).fillna(df.get("eps_max", nan))
    step = dict(zip(df["setting"], df["step_s"], strict=True))
    plain = df["setting"].str.replace(r"^sample eps=\S+ ", "none ", regex=True).map(step)
    df["dpsgd_step_overhead"] = (df["step_s"] / plain).where(df["setting"].str.startswith("sample"))
    return df
