"""Learning curves on the virtual clock, so that synchronous and asynchronous runs compare in
the same simulated time (local steps of a speed-1 client; see fedlib.vclock).

An async run records `virtual_s` per server step. A synchronous round lasts until its slowest
client: max over its clients of speed × steps, from clients.csv — the same speed draws
(round, client) an async task from version round − 1 gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def curve(run_dir: str | Path) -> pd.DataFrame:
    """(round, virtual_s, accuracy, updates) of one run, evaluated rounds only; `updates` counts
    the client updates applied so far (equal budgets compare at equal updates)."""
    run_dir = Path(run_dir)
    rounds = pd.read_csv(run_dir / "rounds.csv")
    if "virtual_s" not in rounds or rounds["virtual_s"].isna().all():
        clients = pd.read_csv(run_dir / "clients.csv")
        kept = clients[clients["outcome"] == "ok"]
        length = (kept["speed"] * kept["steps"]).groupby(kept["round"]).max()
        rounds["virtual_s"] = rounds["round"].map(length).fillna(0.0).cumsum()
    rounds["updates"] = rounds["aggregated"].cumsum()
    return rounds.dropna(subset=["accuracy"])[["round", "virtual_s", "accuracy", "updates"]].reset_index(
        drop=True)


def time_to(c: pd.DataFrame, target: float) -> float:
    """Virtual time of the first evaluation at or above `target` accuracy (inf: never)."""
    hit = c[c["accuracy"] >= target]
    return float(hit["virtual_s"].iloc[0]) if len(hit) else float(np.inf)
