"""Means and 95 % confidence intervals over seeds, and the rule that calls a difference.

Intervals are Student-t intervals (mean ± t(0.975, n−1)·sd/√n), not seaborn's bootstrap: with
the 3-5 seeds a laptop affords, a bootstrap interval is too narrow (it cannot be wider than the
range of the values) and changes with its own random draws. One value has no interval (NaN
half-width), so nothing measured once is ever called a difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval over `n` values (half-width NaN when n < 2)."""

    mean: float
    half: float
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    @property
    def resolved(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half)

    def __str__(self) -> str:
        if not self.resolved:
            return f"{self.mean:.3g} (n={self.n}, no CI)"
        return f"{self.mean:.3g} ± {self.half:.2g} (n={self.n})"


def tcrit(n: int, level: float = LEVEL) -> float:
    """Two-sided t quantile for a mean of n values (NaN when n < 2)."""
    return float(_st.t.ppf(0.5 + level / 2, n - 1)) if n >= 2 else float("nan")


def interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Mean and t-interval of the finite `values` (NaNs, e.g. a run that did not evaluate, dropped)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    half = tcrit(n, level) * float(v.std(ddof=1)) / math.sqrt(n) if n >= 2 else float("nan")
    return Interval(float(v.mean()), half, n)


def difference(a: Iterable[float], b: Iterable[float], level: float = LEVEL) -> Interval:
    """mean(b) − mean(a) with Welch's t-interval (unequal variances); n = the smaller group."""
    x = np.asarray([v for v in a if v is not None and np.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if v is not None and np.isfinite(v)], dtype=float)
    n = min(len(x), len(y))
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    d = float(y.mean() - x.mean())
    if n < 2:
        return Interval(d, float("nan"), n)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return Interval(d, 0.0, n)
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return Interval(d, float(_st.t.ppf(0.5 + level / 2, dof)) * se, n)


def differs(a: Interval, b: Interval) -> bool:
    """A difference is called only where both intervals exist and do not overlap."""
    return a.resolved and b.resolved and (a.hi < b.lo or b.hi < a.lo)


def summarize(df: pd.DataFrame, by: str | Sequence[str], value: str | Sequence[str],
              level: float = LEVEL) -> pd.DataFrame:
    """One row per group of `by`: for each `value` its mean (under its own name), `<value>_ci`
    (half-width), `<value>_lo`, `<value>_hi`; and `n`, the runs in the group — what the
    notebooks' tables and error bars show."""
    keys = [by] if isinstance(by, str) else list(by)
    values = [value] if isinstance(value, str) else list(value)
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for v in values:
            iv = interval(g[v], level)
            row.update({v: iv.mean, f"{v}_ci": iv.half, f"{v}_lo": iv.lo, f"{v}_hi": iv.hi})
        row["n"] = len(g)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Slope:
    """Least-squares y = a + b·x: the slope with its t-interval (n − 2 degrees of freedom) and R²."""

    slope: Interval
    intercept: float
    r2: float


def slope(x: Iterable[float], y: Iterable[float], level: float = LEVEL) -> Slope:
    xs, ys = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    n = len(xs)
    if n < 2 or np.ptp(xs) == 0:
        return Slope(Interval(float("nan"), float("nan"), n), float("nan"), float("nan"))
    b, a = np.polyfit(xs, ys, 1)
    resid = ys - (a + b * xs)
    ss = float(((ys - ys.mean()) ** 2).sum())
    r2 = 1 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    if n < 3:
        return Slope(Interval(float(b), float("nan"), n), float(a), r2)
    se = math.sqrt(float((resid**2).sum()) / (n - 2) / float(((xs - xs.mean()) ** 2).sum()))
    return Slope(Interval(float(b), float(_st.t.ppf(0.5 + level / 2, n - 2)) * se, n), float(a), r2)
