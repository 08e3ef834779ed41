"""Intervals that stay inside their quantity's range, for the figures (`figures.ci_lines`,
`figures.ci_bars`).

A Student-t interval (`stats.interval`) is symmetric around the mean, so on a positive quantity
measured a few times it can reach below zero: two round times of 0.1 s and 0.9 s give
0.5 ± 5.1 s, a "95 % interval" of [−4.6, 5.6] s that no reader should be shown. Three rules:
- a **positive** quantity (seconds, bytes, a ratio of times) gets its interval on the log scale:
  the geometric mean with exp(mean(log x) ± t·sd(log x)/√n), which is always > 0 and is the
  right interval for a quantity that varies by factors;
- a **bounded** quantity (accuracy in [0, 1]) keeps its t-interval, cut at the bounds;
- at **n ≤ `few`** (3 for a positive quantity: t(0.975, 1) = 12.7 and t(0.975, 2) = 4.3 make an
  interval that says more about the t-distribution than about the runs) no interval is drawn:
  every run is drawn as a point instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from . import stats

Scale = Literal["linear", "log"]
FEW = {"linear": 1, "log": 3}  # the default n at or below which the runs are drawn, not an interval
UNBOUNDED = (-math.inf, math.inf)


@dataclass(frozen=True)
class Band:
    """A centre (mean, or geometric mean on the log scale) and its 95 % interval over `n` runs;
    lo and hi are NaN where no interval is drawn (n ≤ few)."""

    center: float
    lo: float
    hi: float
    n: int

    @property
    def drawn(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


def few_default(scale: Scale) -> int:
    return FEW[scale]


def band(values: Iterable[float], scale: Scale = "linear", bounds: tuple[float, float] = UNBOUNDED,
         few: int | None = None) -> Band:
    """The centre and interval of the finite `values` under `scale` (the rules above). A
    non-positive value on the log scale is an error naming it: such a quantity is not positive."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    n, few = len(v), FEW[scale] if few is None else few
    nan = float("nan")
    if n == 0:
        return Band(nan, nan, nan, 0)
    if scale == "log":
        if (v <= 0).any():
            raise ValueError(f"log-scale interval of {float(v.min()):g} ≤ 0: not a positive quantity")
        iv = stats.interval(np.log(v))
        center = math.exp(iv.mean)
        lo, hi = (math.exp(iv.lo), math.exp(iv.hi)) if iv.resolved else (nan, nan)
    else:
        iv = stats.interval(v)
        center, lo, hi = iv.mean, max(iv.lo, bounds[0]), min(iv.hi, bounds[1])
        if not iv.resolved:
            lo = hi = nan
    if n <= few:
        lo = hi = nan
    return Band(center, lo, hi, n)


def summarize(df: pd.DataFrame, by: str | Sequence[str], value: str, scale: Scale = "linear",
              bounds: tuple[float, float] = UNBOUNDED, few: int | None = None) -> pd.DataFrame:
    """One row per group of `by` (groups in sorted order): `value` (the centre), `<value>_lo`,
    `<value>_hi` (NaN where no interval is drawn) and `n`."""
    keys = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        b = band(g[value], scale, bounds, few)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                     value: b.center, f"{value}_lo": b.lo, f"{value}_hi": b.hi, "n": b.n})
    return pd.DataFrame(rows, columns=[*keys, value, f"{value}_lo", f"{value}_hi", "n"])


def what(scale: Scale, few: int | None = None) -> str:
    """How an axis label names the centre and interval drawn."""
    few = FEW[scale] if few is None else few
    runs = f"; n ≤ {few}: each run" if few > 1 else ""
    return ("geometric mean, 95% CI on log scale" if scale == "log" else "mean, 95% t-CI") + runs
