"""Plotting and fitting helpers the notebooks call (seaborn on tidy DataFrames), so notebooks
stay orchestration only."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..hpc.store import REPO_ROOT
from ..record.metrics import PHASES
from . import ranges

SHOWN = ("compute", "pack", "comm", "wait", "aggregate", "eval", "checkpoint", "other")


def out_path(out_dir: str | Path) -> Path:
    """`out_dir` made absolute (relative paths are relative to the repository) and created."""
    p = Path(out_dir)
    p = p if p.is_absolute() else REPO_ROOT / p
    p.mkdir(parents=True, exist_ok=True)
    return p


def save(fig: Any, out_dir: str | Path, name: str) -> None:
    """Write `fig` as `<out_dir>/<name>.png`, warning (one line per pair) where its titles, axis
    labels or tick labels run into each other (`collisions`). Returns nothing: a notebook's figure
    cell ends with this call, and a returned path would be printed under the figure (and into the
    lab record)."""
    for a, b in collisions(fig):
        warnings.warn(f"{name}.png: {a!r} overlaps {b!r}", stacklevel=2)
    fig.savefig(out_path(out_dir) / f"{name}.png", dpi=120, bbox_inches="tight")


def _texts(fig: Any) -> list[tuple[Any, Any]]:
    """The text a reader must be able to read, each with its owner: the figure's title and every
    axes' titles and axis labels (owner None), and visible tick labels (owner: their axis)."""
    out: list[tuple[Any, Any]] = [(fig._suptitle, None)] if getattr(fig, "_suptitle", None) else []
    for ax in fig.axes:
        labels = (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label)
        out += [(t, None) for t in labels]
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            out += [(t.label1, axis) for t in axis.get_major_ticks()
                    if t.label1.get_visible() and lo - 1e-9 <= t.get_loc() <= hi + 1e-9]
    return [(t, o) for t, o in out if t.get_visible() and t.get_text().strip()]


def collisions(fig: Any, clearance: float = 2.0, label_clearance: float = 6.0) -> list[tuple[str, str]]:
    """Pairs of texts of `fig` that, as drawn, overlap or come closer than `clearance` pixels
    (`label_clearance` between two titles or axis labels: two titles a space apart read as one).
    An axes' x and y tick labels meeting at its corner are not a collision."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [(t.get_text(), o, t.get_window_extent(r)) for t, o in _texts(fig)]
    out = []
    for i, (a, oa, ba) in enumerate(boxes):
        for b, ob, bb in boxes[i + 1:]:
            if oa is not None and ob is not None and oa is not ob and oa.axes is ob.axes:
                continue  # one axes' x and y tick labels, at its corner
            c = label_clearance if oa is None and ob is None else clearance
            if min(ba.x1, bb.x1) - max(ba.x0, bb.x0) > -c and min(ba.y1, bb.y1) - max(ba.y0, bb.y0) > -c:
                out.append((a, b))
    return out


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
             label: str | None = None, marker: str = "o", palette: dict | None = None,
             scale: ranges.Scale = "linear", bounds: tuple[float, float] = ranges.UNBOUNDED,
             few: int | None = None) -> pd.DataFrame:
    """Centre of `y` over seeds per `x` (one curve per `hue`) with its 95 % interval as error bars,
    kept inside the quantity's range (`ranges`: `scale="log"` for seconds, bytes and time ratios,
    `bounds=(0, 1)` for accuracy). A point with n ≤ `few` runs has no interval: it is drawn as a
    hollow marker with each of its runs as a dot, and the legend says so — never a zero-width bar
    and never a t-interval on two times. Returns the table it drew."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    few = ranges.few_default(scale) if few is None else few
    table = ranges.summarize(runs, [hue, x] if hue else [x], y, scale, bounds, few)
    keys = list(dict.fromkeys(runs[hue])) if hue else [label or y]
    bare_drawn = False
    for i, key in enumerate(keys):  # colours C0, C1, ... in the order the runs came
        g = table[table[hue] == key] if hue else table
        color = (palette or {}).get(key, f"C{i}")
        ax.plot(g[x], g[y], marker=None, color=color)
        many = g[g[f"{y}_lo"].notna()]
        ax.errorbar(many[x], many[y], yerr=_yerr(many, y), fmt=marker, capsize=3, color=color,
                    label=f"{key} ({n_text(many['n'])})" if len(many) else None)
        bare = g[g[f"{y}_lo"].isna() & (g["n"] > 0)]
        if len(bare):
            ax.plot(bare[x], bare[y], ls="none", marker=marker, mfc="none", color=color,
                    label=f"{key} ({n_text(bare['n'])}{_each(bare)})" if not len(many) else None)
            mine = runs if hue is None else runs[runs[hue] == key]
            _dots(ax, mine[mine[x].isin(bare.loc[bare["n"] > 1, x])], x, y, color)
            if len(many) and not bare_drawn:  # one legend entry for every point without an interval
                ax.plot([], [], ls="none", marker=marker, mfc="none", color="grey", label=_no_interval(few))
                bare_drawn = True
    ax.set(xlabel=x, ylabel=f"{y} ({ranges.what(scale, few)})")
    return table


def _yerr(t: pd.DataFrame, y: str) -> np.ndarray:
    """Asymmetric error-bar lengths (an interval on the log scale or cut at a bound is not ±h)."""
    return np.vstack([(t[y] - t[f"{y}_lo"]).to_numpy(float), (t[f"{y}_hi"] - t[y]).to_numpy(float)])


def _each(bare: pd.DataFrame) -> str:
    return ", each run a dot" if (bare["n"] > 1).any() else ""


def _no_interval(few: int) -> str:
    return "n=1: no interval" if few <= 1 else f"n ≤ {few}: no interval, runs as dots"


def _dots(ax: Any, rows: pd.DataFrame, x: str, y: str, color: Any, horizontal: bool = False) -> None:
    if len(rows):
        xy = (rows[y], rows[x]) if horizontal else (rows[x], rows[y])
        ax.plot(*xy, ls="none", marker=".", ms=5, color=color, alpha=0.7, zorder=3)


def ci_bars(runs: pd.DataFrame, cat: str, y: str, ax: Any = None, horizontal: bool = False,
            hue: str | None = None, scale: ranges.Scale = "linear",
            bounds: tuple[float, float] = ranges.UNBOUNDED, few: int | None = None,
            show_runs: bool = True) -> pd.DataFrame:
    """Bars of the centre of `y` over seeds per `cat` (grouped by `hue`) with 95 % whiskers kept in
    the quantity's range (`ranges`, as `ci_lines`); a bar with n ≤ `few` runs has no whisker and a
    hollow marker at its end, its runs drawn as dots (`show_runs`). The axis label states n."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    few = ranges.few_default(scale) if few is None else few
    table = ranges.summarize(runs, [cat] if hue is None else [cat, hue], y, scale, bounds, few)
    cats = list(dict.fromkeys(runs[cat]))
    hues = [None] if hue is None else list(dict.fromkeys(runs[hue]))
    width = 0.8 / len(hues)
    bare_drawn = False
    for j, h in enumerate(hues):
        g = table if h is None else table[table[hue] == h]
        g = g.set_index(cat).reindex(cats)
        pos = np.arange(len(cats)) - 0.4 + width * (j + 0.5)
        err = _yerr(g, y)  # NaN: no whisker (matplotlib skips it)
        draw = ax.barh if horizontal else ax.bar
        draw(pos, g[y].to_numpy(), width, **({"xerr": err} if horizontal else {"yerr": err}),
             capsize=3, label=None if h is None else str(h), color=f"C{j}")
        bare = (g[f"{y}_lo"].isna() & (g["n"] > 0)).to_numpy()
        if bare.any():
            xy = (g[y].to_numpy()[bare], pos[bare]) if horizontal else (pos[bare], g[y].to_numpy()[bare])
            ax.plot(*xy, ls="none", marker="o", mfc="none", color="black",
                    label=None if bare_drawn else _no_interval(few))
            bare_drawn = True
            mine = runs if h is None else runs[runs[hue] == h]
            several = {c for c, n in zip(cats, g["n"], strict=True) if n > 1} & set(g.index[bare])
            if show_runs:
                rows = mine[mine[cat].isin(several)]
                at = dict(zip(cats, pos, strict=True))
                _dots(ax, rows.assign(_pos=rows[cat].map(at)), "_pos", y, "black", horizontal)
    (ax.set_yticks if horizontal else ax.set_xticks)(np.arange(len(cats)), [str(c) for c in cats])
    what = f"{y} ({ranges.what(scale, few)}, {n_text(table['n'])})"
    if horizontal:
        if not ax.yaxis_inverted():  # first category on top (once: a shared axis is one axis)
            ax.invert_yaxis()
        ax.set(xlabel=what, ylabel=cat)
    else:
        ax.set(ylabel=what, xlabel=cat)
    if hue is not None or bare_drawn:
        ax.legend(title=hue, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    return table


def run_dirs(runs: pd.DataFrame, root: str | Path) -> list[Path]:
    """Each row's run folder: its `run_dir` column where the sweep records one, else root/name."""
    if "run_dir" in runs:
        return [Path(p) for p in runs["run_dir"]]
    return [Path(root) / n for n in runs["name"]]


def log_axis(ax: Any, axis: str = "y") -> None:
    """A log scale whose ticks read as numbers (0.2, 0.5, 1, 2), not as powers of ten: a ratio or
    a time a reader compares by factors."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    which.set_minor_formatter(NullFormatter())


def tick_step(n: int, most: int = 10) -> int:
    """Label every k-th of `n` ticks so that at most `most` labels share an axis (1 up to `most`)."""
    return max(1, math.ceil(n / most))


def plot_label_heatmap(rep: pd.DataFrame, label_names: list[str] | None = None, ax: Any = None,
                       most: int = 10) -> Any:
    """Clients × labels heatmap of sample counts (seaborn) from a partition report
    (fedlib.sim.partition_report.report, partition.csv); with many clients every k-th is labelled
    (`tick_step`), so the numbers never run into each other. Returns the axes."""
    import seaborn as sns

    cols = [c for c in rep.columns if c.startswith("label_")]
    grid = rep.set_index("client")[cols]
    if label_names:
        grid.columns = label_names[: len(cols)]
    ax = sns.heatmap(grid.T, ax=ax, cmap="viridis", cbar_kws={"label": "samples"},
                     xticklabels=tick_step(len(grid), most), yticklabels=tick_step(len(cols), most))
    ax.tick_params(axis="x", rotation=0)
    ax.tick_params(axis="y", rotation=0)
    ax.set_xlabel("client")
    ax.set_ylabel("label")
    return ax
