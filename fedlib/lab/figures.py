"""Plotting and fitting helpers the notebooks call (seaborn on tidy DataFrames), so notebooks
stay orchestration only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..hpc.store import REPO_ROOT
from ..record.metrics import PHASES
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
    # one run: one value per round, drawn as points on a line (no interval)
    ax = sns.lineplot(data=scored, x="round", y="accuracy", marker="o", errorbar=None, ax=ax,
                      label="accuracy (n=1)")
    sns.lineplot(data=scored, x="round", y="macro_f1", marker="s", errorbar=None, ax=ax,
                 label="macro-F1 (n=1)")
    if majority is not None:
        ax.axhline(majority, ls="--", c="grey", label="majority class")
    ax.set_ylim(0, 1)
    ax.legend()
    return ax


def n_text(n: pd.Series | list[int]) -> str:
    """"n=3", or "n=1–3" where groups differ: what a legend or axis label states."""
    vals = sorted({int(v) for v in n})
    return f"n={vals[0]}" if len(vals) == 1 else f"n={vals[0]}–{vals[-1]}"


def ci_lines(runs: pd.DataFrame, x: str, y: str, hue: str | None = None, ax: Any = None,
             label: str | None = None, marker: str = "o", palette: dict | None = None) -> pd.DataFrame:
    """Mean of `y` over seeds per `x` (one curve per `hue`), with 95 % t-interval error bars
    (`stats`). A point measured once has no interval and gets no bar: it is drawn as a hollow
    marker, and the legend says "n=1" — never a zero-width bar. Returns the table it drew."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    table = stats.summarize(runs, [hue, x] if hue else [x], y)
    groups = [(k, table[table[hue] == k]) for k in dict.fromkeys(runs[hue])] if hue else [(label or y, table)]
    once_drawn = False
    for i, (key, g) in enumerate(groups):  # colours C0, C1, ... in the order the runs came
        color = (palette or {}).get(key, f"C{i}")
        ax.plot(g[x], g[y], marker=None, color=color)
        many = g[g["n"] >= 2]
        ax.errorbar(many[x], many[y], yerr=many[f"{y}_ci"], fmt=marker, capsize=3, color=color,
                    label=f"{key} ({n_text(many['n'])})" if len(many) else None)
        once = g[g["n"] < 2]
        if len(once):
            ax.plot(once[x], once[y], ls="none", marker=marker, mfc="none", color=color,
                    label=f"{key} (n=1)" if not len(many) else None)
            if len(many) and not once_drawn:  # one legend entry for every single-run point
                ax.plot([], [], ls="none", marker=marker, mfc="none", color="grey", label="n=1: no interval")
                once_drawn = True
    ax.set(xlabel=x, ylabel=f"{y} (mean, 95% t-CI)")
    return table


def ci_bars(runs: pd.DataFrame, cat: str, y: str, ax: Any = None, horizontal: bool = False,
            hue: str | None = None) -> pd.DataFrame:
    """Bars of the mean of `y` over seeds per `cat` (grouped by `hue`), 95 % t-interval whiskers;
    a bar measured once has no whisker and a hollow marker at its end ("n=1" in the legend). The
    axis label states n."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    table = stats.summarize(runs, [cat] if hue is None else [cat, hue], y)
    cats = list(dict.fromkeys(runs[cat]))
    hues = [None] if hue is None else list(dict.fromkeys(runs[hue]))
    width = 0.8 / len(hues)
    once_drawn = False
    for j, h in enumerate(hues):
        g = table if h is None else table[table[hue] == h]
        g = g.set_index(cat).reindex(cats)
        pos = np.arange(len(cats)) - 0.4 + width * (j + 0.5)
        err = g[f"{y}_ci"].where(g["n"] >= 2).to_numpy()  # NaN: no whisker (matplotlib skips it)
        draw = ax.barh if horizontal else ax.bar
        draw(pos, g[y].to_numpy(), width, **({"xerr": err} if horizontal else {"yerr": err}),
             capsize=3, label=None if h is None else str(h), color=f"C{j}")
        once = (g["n"] < 2).to_numpy()
        if once.any():
            xy = (g[y].to_numpy()[once], pos[once]) if horizontal else (pos[once], g[y].to_numpy()[once])
            ax.plot(*xy, ls="none", marker="o", mfc="none", color="black",
                    label=None if once_drawn else "n=1: no interval")
            once_drawn = True
    (ax.set_yticks if horizontal else ax.set_xticks)(np.arange(len(cats)), [str(c) for c in cats])
    what = f"{y} (mean, 95% t-CI, {n_text(table['n'])})"
    if horizontal:
        if not ax.yaxis_inverted():  # first category on top (once: a shared axis is one axis)
            ax.invert_yaxis()
        ax.set(xlabel=what, ylabel=cat)
    else:
        ax.set(ylabel=what, xlabel=cat)
    if hue is not None or once_drawn:
        ax.legend(title=hue, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    return table


def run_dirs(runs: pd.DataFrame, root: str | Path) -> list[Path]:
    """Each row's run folder: its `run_dir` column where the sweep records one, else root/name."""
    if "run_dir" in runs:
        return [Path(p) for p in runs["run_dir"]]
    return [Path(root) / n for n in runs["name"]]


def plot_label_heatmap(rep: pd.DataFrame, label_names: list[str] | None = None, ax: Any = None) -> Any:
    """Clients × labels heatmap of sample counts (seaborn) from a partition report
    (fedlib.sim.partition_report.report, partition.csv); returns the axes."""
    import seaborn as sns

    cols = [c for c in rep.columns if c.startswith("label_")]
    grid = rep.set_index("client")[cols]
    if label_names:
        grid.columns = label_names[: len(cols)]
    ax = sns.heatmap(grid.T, ax=ax, cmap="viridis", cbar_kws={"label": "samples"})
    ax.set_xlabel("client")
    ax.set_ylabel("label")
    return ax
