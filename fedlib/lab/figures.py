"""Plotting and fitting helpers the notebooks call (seaborn on tidy DataFrames), so notebooks
stay orchestration only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import REPO_ROOT
from ..metrics import PHASES

SHOWN = ("compute", "pack", "comm", "wait", "aggregate", "eval", "checkpoint", "other")


def out_path(out_dir: str | Path) -> Path:
    """`out_dir` made absolute (relative paths are relative to the repository) and created."""
    p = Path(out_dir)
    p = p if p.is_absolute() else REPO_ROOT / p
    p.mkdir(parents=True, exist_ok=True)
    return p


def save(fig: Any, out_dir: str | Path, name: str) -> Path:
    path = out_path(out_dir) / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def breakdown_error(rounds: pd.DataFrame) -> float:
    """Largest relative gap between a round's wall time and the sum of its phases."""
    parts = rounds[[f"{p}_s" for p in PHASES]].sum(axis=1)
    return float(((parts - rounds["round_s"]).abs() / rounds["round_s"]).max())


def time_breakdown(rounds: pd.DataFrame, ax: Any = None, x: str = "round") -> Any:
    """Stacked bars: seconds per phase for each row of `rounds` (one bar per `x`)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    cols = [f"{p}_s" for p in SHOWN if f"{p}_s" in rounds and rounds[f"{p}_s"].sum() > 0]
    rounds.set_index(x)[cols].rename(columns=lambda c: c[:-2]).plot.bar(stacked=True, ax=ax, width=0.8)
    ax.set_ylabel("seconds")
    ax.legend(title="phase", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def learning_curve(rounds: pd.DataFrame, majority: float | None = None, ax: Any = None) -> Any:
    import seaborn as sns

    scored = rounds.dropna(subset=["accuracy"])
    ax = sns.lineplot(data=scored, x="round", y="accuracy", marker="o", ax=ax, label="accuracy")
    sns.lineplot(data=scored, x="round", y="macro_f1", marker="s", ax=ax, label="macro-F1")
    if majority is not None:
        ax.axhline(majority, ls="--", c="grey", label="majority class")
    ax.set_ylim(0, 1)
    ax.legend()
    return ax


def linear_fit(df: pd.DataFrame, x: str, y: str, by: list[str]) -> pd.DataFrame:
    """Least-squares y = a + b·x for each group: columns a, b, r2, n."""
    rows = []
    for key, g in df.groupby(by):
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        b, a = np.polyfit(xs, ys, 1) if len(g) > 1 else (0.0, float(ys.mean()))
        ss = float(((ys - ys.mean()) ** 2).sum())
        r2 = 1 - float(((ys - (a + b * xs)) ** 2).sum()) / ss if ss > 0 else 1.0
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                     "a": a, "b": b, "r2": r2, "n": len(g)})
    return pd.DataFrame(rows)


def with_fit(df: pd.DataFrame, fit: pd.DataFrame, x: str, by: list[str], name: str = "fit") -> pd.DataFrame:
    """`df` plus a column `name` = a + b·x from the matching row of `fit`."""
    out = df.merge(fit[[*by, "a", "b"]], on=by, how="left")
    out[name] = out["a"] + out["b"] * out[x]
    return out.drop(columns=["a", "b"])
