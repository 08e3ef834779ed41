"""Plotting and fitting helpers the notebooks call (seaborn on tidy DataFrames), so notebooks
stay orchestration only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import REPO_ROOT
from ..metrics import PHASES
from . import stats

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


def ci_lines(runs: pd.DataFrame, x: str, y: str, hue: str | None = None, ax: Any = None,
             label: str | None = None, marker: str = "o") -> pd.DataFrame:
    """Mean of `y` over seeds per `x` (one curve per `hue`), with 95 % t-interval error bars
    (`stats`; a point measured once has no bar). Returns the table it drew."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    table = stats.summarize(runs, [hue, x] if hue else [x], y)
    groups = [(k, table[table[hue] == k]) for k in dict.fromkeys(runs[hue])] if hue else [(label or y, table)]
    for i, (key, g) in enumerate(groups):  # colours C0, C1, ... in the order the runs came
        ax.errorbar(g[x], g[y], yerr=g[f"{y}_ci"].fillna(0), marker=marker, capsize=3, label=str(key),
                    color=f"C{i}")
    ax.set(xlabel=x, ylabel=f"{y} (mean, 95% CI)")
    return table


def ci_bars(runs: pd.DataFrame, cat: str, y: str, ax: Any = None, horizontal: bool = False,
            hue: str | None = None) -> pd.DataFrame:
    """Bars of the mean of `y` over seeds per `cat` (grouped by `hue`), 95 % t-interval whiskers."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    table = stats.summarize(runs, [cat] if hue is None else [cat, hue], y)
    cats = list(dict.fromkeys(runs[cat]))
    hues = [None] if hue is None else list(dict.fromkeys(runs[hue]))
    width = 0.8 / len(hues)
    for j, h in enumerate(hues):
        g = table if h is None else table[table[hue] == h]
        g = g.set_index(cat).reindex(cats)
        pos = np.arange(len(cats)) - 0.4 + width * (j + 0.5)
        err = g[f"{y}_ci"].fillna(0).to_numpy()
        draw = ax.barh if horizontal else ax.bar
        draw(pos, g[y].to_numpy(), width, **({"xerr": err} if horizontal else {"yerr": err}),
             capsize=3, label=None if h is None else str(h))
    (ax.set_yticks if horizontal else ax.set_xticks)(np.arange(len(cats)), [str(c) for c in cats])
    if horizontal:
        if not ax.yaxis_inverted():  # first category on top (once: a shared axis is one axis)
            ax.invert_yaxis()
        ax.set(xlabel=f"{y} (mean, 95% CI)", ylabel=cat)
    else:
        ax.set(ylabel=f"{y} (mean, 95% CI)", xlabel=cat)
    if hue is not None:
        ax.legend(title=hue, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    return table


def run_dirs(runs: pd.DataFrame, root: str | Path) -> list[Path]:
    """Each row's run folder: its `run_dir` column where the sweep records one, else root/name."""
    if "run_dir" in runs:
        return [Path(p) for p in runs["run_dir"]]
    return [Path(root) / n for n in runs["name"]]
