"""The claims as a forest plot: one line per claim — its effect and 95 % CI — against the region
where the claim holds (its tolerance or margin, shaded), grouped by family (accuracy,
communication, asynchrony) and coloured by verdict. It is the picture a reader of the lab record
looks at before the table: the page (`page`) opens with it and 99_summary ends with it.

Claims of one family can be measured in different units (a comm time's change over the client
range, a log-log slope, a share of the round): each unit gets its own panel and x axis, so no
effect is drawn against another's scale. A positive ratio (time to target / sync's) is drawn on a
log axis; an interval end outside a panel (≤ 0 on a log axis, or past the limits) stops at the
edge with an arrow. Columns are read by name: `family`, `basis` (measured / projected) and `holm`
(the Holm-adjusted verdict) are used when present.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .figures import log_axis
from .verdict import FAILS, HOLDS, OPEN, TOLERANCES

FAMILIES = ("accuracy", "communication", "asynchrony")
COLORS = {HOLDS: "#1a7f37", FAILS: "#c62828", OPEN: "#6e6e6e"}
MARKERS = {HOLDS: ("o", True), FAILS: ("X", True), OPEN: ("o", False)}  # (marker, filled)
SHADE = "#1a7f37"
UNITS = {"accuracy": "Δ accuracy, test arm − reference",
         "flat": "change over the client range / mean comm s",
         "curvature": "quadratic term / rise over the client range",
         "size": "log-log slope of comm s on bytes",
         "time": "time to sync's final accuracy / sync's (log axis)",
         "sync": "share of the round"}
READ = ("claim", "verdict", "tolerance", "measure", "effect", "ci_low", "ci_high")
LOG_UNITS = {"time"}
ASYNC = re.compile(r"virtual time|wall[- ]clock|wall time|asynchron|FedBuff|FedAsync", re.IGNORECASE)


def family(row: pd.Series) -> str:
    """accuracy / communication / asynchrony: the row's `family` column where the table has one,
    else from its text (an asynchronous arm's rows, accuracy margins, the rest communication)."""
    given = row.get("family")
    if isinstance(given, str) and given.strip():
        return given.strip()
    if ASYNC.search(str(row.get("claim", ""))):
        return "asynchrony"
    return "accuracy" if "accuracy" in str(row.get("tolerance", "")) else "communication"


def tolerance_key(text: object) -> str | None:
    """The `verdict.TOLERANCES` entry a row's tolerance text names (None: an unknown one)."""
    return next((k for k, t in TOLERANCES.items() if t.text in str(text)), None)


@dataclass(frozen=True)
class Panel:
    """Claims of one family measured in one unit: drawn on one x axis, shaded where they hold."""

    family: str
    unit: str
    rows: pd.DataFrame
    holds_lo: float = -math.inf
    holds_hi: float = math.inf
    log: bool = False
    shared: str = ""  # what every claim text of the panel ends with (" — what trained"), said once

    @property
    def xlabel(self) -> str:
        return UNITS.get(self.unit, self.unit) + (f"\n{self.shared}" if self.shared else "")


def shared_tail(claims: pd.Series, sep: str = " — ") -> str:
    """The part after `sep` that every claim text ends with ('' when they differ or one lacks it)."""
    tails = {str(c).rpartition(sep)[2] if sep in str(c) else None for c in claims}
    return tails.pop() or "" if len(tails) == 1 else ""


def panels(claims: pd.DataFrame) -> list[Panel]:
    """The claims split by family (FAMILIES first, in that order) and unit, table order kept.
    Columns an older or smaller table lacks are read as empty."""
    claims = claims.assign(**{c: claims.get(c, pd.NA) for c in READ})
    df = claims.assign(_family=claims.apply(family, axis=1),
                       _unit=[tolerance_key(t) or ("" if pd.isna(m) else str(m))
                              for t, m in zip(claims["tolerance"], claims["measure"], strict=True)])
    fams = [f for f in FAMILIES if f in set(df["_family"])] + [f for f in dict.fromkeys(df["_family"])
                                                             if f not in FAMILIES]
    out = []
    for fam in fams:
        rows = df[df["_family"] == fam]
        for unit in dict.fromkeys(rows["_unit"]):
            g = rows[rows["_unit"] == unit].reset_index(drop=True)
            shared = shared_tail(g["claim"])
            if shared:  # said once under the axis, not on every line
                g = g.assign(claim=g["claim"].astype(str).str.removesuffix(f" — {shared}"))
            tol = TOLERANCES.get(unit)
            centres = g["effect"].astype(float)
            log = unit in LOG_UNITS and bool((centres[np.isfinite(centres)] > 0).all())
            out.append(Panel(fam, unit, g, tol.lo if tol else -math.inf, tol.hi if tol else math.inf, log,
                             shared))
    return out


def _limits(p: Panel) -> tuple[float, float]:
    vals = pd.concat([p.rows[c].astype(float) for c in ("effect", "ci_low", "ci_high")])
    vals = pd.concat([vals, pd.Series([p.holds_lo, p.holds_hi])])
    vals = vals[np.isfinite(vals) & ((vals > 0) if p.log else True)]
    if not len(vals):
        return (0.5, 2.0) if p.log else (-1.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if p.log:
        return lo / 1.4, hi * 1.4
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(lo), 1.0) * 0.1
    return lo - pad, hi + pad


def _label(row: pd.Series, fam: str, width: int) -> str:
    text = str(row["claim"])
    if fam == "accuracy":
        text = re.sub(r"^accuracy non-inferior ", "", text)
    if "projected" in str(row.get("basis", "")):
        text += " [projected]"
    lines = textwrap.wrap(text, width) or [""]
    holm = row.get("holm")
    if isinstance(holm, str) and holm and holm != row["verdict"]:
        lines.append(f"Holm-adjusted: {holm}")
    return "\n".join(lines)


def _draw(ax: Any, p: Panel, title: str | None, label_width: int = 44) -> None:
    lo, hi = _limits(p)
    if p.log:
        log_axis(ax, "x")
    ax.set_xlim(lo, hi)
    n = len(p.rows)
    ax.set_ylim(n - 0.5, -0.5)
    if math.isfinite(p.holds_lo) or math.isfinite(p.holds_hi):
        ax.axvspan(max(p.holds_lo, lo), min(p.holds_hi, hi), color=SHADE, alpha=0.10, lw=0)
        for b in (p.holds_lo, p.holds_hi):
            if math.isfinite(b) and lo < b < hi:
                ax.axvline(b, color=SHADE, ls="--", lw=1)
    for i, r in p.rows.iterrows():
        verdict = r["verdict"] if r["verdict"] in COLORS else OPEN
        color, (marker, filled) = COLORS[verdict], MARKERS[verdict]
        e, cl, ch = (float(r[c]) for c in ("effect", "ci_low", "ci_high"))
        if not math.isfinite(e):
            ax.text(0.5, i, "no estimate", transform=ax.get_yaxis_transform(), ha="center", va="center",
                    color=color, fontsize="small", style="italic")
            continue
        if math.isfinite(cl) and math.isfinite(ch):
            a, b = (cl if (cl > 0 or not p.log) else -math.inf), ch
            ls = "--" if "projected" in str(r.get("basis", "")) else "-"
            ax.plot([max(a, lo), min(b, hi)], [i, i], color=color, lw=2, ls=ls, solid_capstyle="butt")
            if a < lo:
                ax.plot(lo, i, marker="<", color=color, ms=6, clip_on=False)
            if b > hi:
                ax.plot(hi, i, marker=">", color=color, ms=6, clip_on=False)
        ax.plot(min(max(e, lo), hi), i, marker=marker, ms=7, color=color, mfc=color if filled else "white",
                mew=1.5, zorder=3)
    ax.set_yticks(range(n), [_label(r, p.family, label_width) for _, r in p.rows.iterrows()],
                  fontsize="small")
    ax.tick_params(axis="x", labelsize="small")
    ax.set_xlabel(p.xlabel, fontsize="small")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title, loc="left", fontweight="bold", fontsize="medium")


TITLE_IN = 0.24  # inches a family's title takes above its first panel


def _height(p: Panel, label_width: int, titled: bool) -> float:
    """Inches: rows spaced for their longest label, the x axis, and the family's title."""
    lines = max(_label(r, p.family, label_width).count("\n") + 1 for _, r in p.rows.iterrows())
    return len(p.rows) * (0.15 * lines + 0.08) + 0.52 + TITLE_IN * titled + 0.15 * bool(p.shared)


def split(heights: list[float], columns: int) -> list[int]:
    """Where to cut the panels (in order) into `columns` runs of nearly equal height: the cut
    indices, len = columns − 1 (a family may continue in the next column)."""
    if columns <= 1 or len(heights) < 2:
        return []
    total, run = sum(heights), 0.0
    cuts: list[int] = []
    for i, h in enumerate(heights[:-1]):
        run += h
        target = total * (len(cuts) + 1) / columns
        if len(cuts) < columns - 1 and run + heights[i + 1] / 2 > target:
            cuts.append(i + 1)
    return cuts


def draw(claims: pd.DataFrame, width: float = 15.0, columns: int | None = None) -> Any:
    """The forest plot of a claims table (`claims.csv` read as it is); returns the figure (not
    registered with pyplot: a notebook shows it with `display(fig)`). Two
    columns of panels (`columns=None`: when one would be taller than 6 inches), so that the whole
    plot fits a laptop's first screen under the page's header."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ps = panels(claims)
    if not ps:
        raise ValueError("claims table has no rows: nothing to draw")
    firsts = [i == 0 or p.family != ps[i - 1].family for i, p in enumerate(ps)]
    one = [_height(p, 70, t) for p, t in zip(ps, firsts, strict=True)]
    columns = columns or (2 if sum(one) > 6 else 1)
    label_width = 70 if columns == 1 else 50
    heights = [_height(p, label_width, t) for p, t in zip(ps, firsts, strict=True)]
    cuts = [0, *split(heights, columns), len(ps)]
    for c in cuts[1:-1]:  # a family continued in the next column is titled again there
        heights[c] = _height(ps[c], label_width, True)
    runs = [list(range(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]
    tall = max(sum(heights[i] for i in r) for r in runs)
    fig = Figure(figsize=(width, tall + 0.5), layout="constrained")  # no pyplot: no global state
    FigureCanvasAgg(fig)
    subs = fig.subfigures(1, len(runs), squeeze=False)[0] if len(runs) > 1 else [fig]
    seen: set[str] = set()
    for sub, run in zip(subs, runs, strict=True):
        filler = tall - sum(heights[i] for i in run)
        ratios = [heights[i] for i in run] + ([filler] if filler > 0.05 else [])
        axes = sub.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
        for j, (ax, i) in enumerate(zip(axes, run, strict=False)):
            fam = ps[i].family
            title = (fam.capitalize() if fam not in seen
                     else f"{fam.capitalize()} (continued)" if j == 0 else None)
            _draw(ax, ps[i], title, label_width)
            seen.add(fam)
        if len(ratios) > len(run):
            axes[-1].set_axis_off()
    handles: list[Any] = [Line2D([], [], ls="-", lw=2, marker=MARKERS[v][0], ms=7, color=COLORS[v],
                      mfc=COLORS[v] if MARKERS[v][1] else "white", label=v) for v in (HOLDS, FAILS, OPEN)]
    handles.append(Patch(color=SHADE, alpha=0.15, label="where the claim holds (tolerance / margin)"))
    fig.legend(handles=handles, loc="outside upper center", ncols=4, fontsize="small", frameon=False,
               title="each claim's effect and 95 % CI, by verdict", title_fontsize="small")
    from .figures import collisions

    for _ in range(4):  # the height estimate is an estimate: grow until no two labels touch
        if not collisions(fig):
            break
        fig.set_size_inches(width, fig.get_size_inches()[1] * 1.1)
    return fig
