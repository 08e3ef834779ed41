"""Means and 95 % confidence intervals over seeds, differences (paired, Welch, stratified), ratios
on the log scale, one-sided p-values against a margin, and regression coefficients with theirs.
How many seeds a design needs, and the effect it can detect: `power`.

Intervals are Student-t intervals (mean ± t(0.975, n−1)·sd/√n), not seaborn's bootstrap: with
the 3-5 seeds a laptop affords, a bootstrap interval is too narrow (it cannot be wider than the
range of the values) and changes with its own random draws. One value has no interval (NaN
half-width), so nothing measured once is ever called a difference. Two settings are compared by
the interval of their difference, never by setting their own two intervals side by side: two
95 % intervals that share a stretch are compatible with a real difference.
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


@dataclass(frozen=True)
class Effect:
    """A difference test − reference combined over strata: its interval (n = seeds × strata), how
    it was formed, and `unit_sd`, the spread of one seed's difference within a stratum (pooled),
    from which `seeds_needed` predicts the interval at more seeds."""

    iv: Interval
    method: str  # "paired" (same seeds in both arms) or "Welch"
    strata: int
    unit_sd: float
    se: float = float("nan")  # standard error of iv.mean
    dof: float = float("nan")  # degrees of freedom of its t-interval (and of unit_sd)


def stratified(strata: Sequence[tuple[Sequence[float], Sequence[float]]], paired: bool,
               level: float = LEVEL) -> Effect:
    """Mean over strata of each stratum's effect mean(b) − mean(a), with a pooled-variance t-interval.

    Paired (each stratum's a[i], b[i] from the same seed: same initial weights and partition): the
    per-seed differences' variance is pooled over strata, se = s_p·√(Σ 1/n_k)/K with Σ(n_k − 1)
    degrees of freedom. Welch (arms that do not share seeds): se² = Σ_k (v_a/n_a + v_b/n_b)/K² with
    Welch–Satterthwaite degrees of freedom over all the groups. One stratum reduces to the paired
    t-interval or Welch's."""
    groups = [(_finite(a), _finite(b)) for a, b in strata]
    groups = [(a, b) for a, b in groups if len(a) and len(b)]
    k = len(groups)
    method = "paired" if paired else "Welch"
    if k == 0:
        return Effect(Interval(float("nan"), float("nan"), 0), method, 0, float("nan"))
    if paired:
        if any(len(a) != len(b) for a, b in groups):
            raise ValueError("paired strata need one reference and one test value per seed")
        diffs = [b - a for a, b in groups]
        mean = float(np.mean([d.mean() for d in diffs]))
        n = sum(len(d) for d in diffs)
        dof = sum(len(d) - 1 for d in diffs)
        if dof == 0:
            return Effect(Interval(mean, float("nan"), n), method, k, float("nan"))
        sp = math.sqrt(sum(float(((d - d.mean()) ** 2).sum()) for d in diffs) / dof)
        se = sp * math.sqrt(sum(1 / len(d) for d in diffs)) / k
        return Effect(Interval(mean, _half(se, dof, level), n), method, k, sp, se, dof)
    mean = float(np.mean([b.mean() - a.mean() for a, b in groups]))
    n = sum(min(len(a), len(b)) for a, b in groups)
    parts = [(v.var(ddof=1) / len(v), len(v) - 1) for a, b in groups for v in (a, b) if len(v) > 1]
    if len(parts) < 2 * k:  # a group measured once: no variance for it
        return Effect(Interval(mean, float("nan"), n), method, k, float("nan"))
    var = float(sum(c for c, _ in parts))
    se = math.sqrt(var) / k
    welch_dof: float = (var**2 / sum(c**2 / d for c, d in parts) if var > 0
                        else float(sum(d for _, d in parts)))
    unit = math.sqrt(sum(c * (d + 1) for c, d in parts) / k)  # sd of mean(b) − mean(a) at one seed each
    return Effect(Interval(mean, _half(se, welch_dof, level), n), method, k, unit, se, welch_dof)


def seeds_needed(gap: float, unit_sd: float, strata: int = 1, power: float = 0.8, level: float = LEVEL,
                 most: int = 1000) -> int | None:
    """(Post hoc: the claims table no longer says this; plan seeds with `power.seeds_for`.)
    Seeds per stratum at which a true effect `gap` away from a tolerance bound, with the
    observed spread `unit_sd`, puts the whole interval on its side of the bound with probability
    `power`: the smallest n with (t(1−α/2) + t(power))·unit_sd/√(strata·n) ≤ |gap|, at
    strata·(n − 1) degrees of freedom. None when no n up to `most` does (or gap is 0)."""
    if not (math.isfinite(gap) and math.isfinite(unit_sd)) or gap == 0:
        return None
    for n in range(2, most + 1):
        dof = strata * (n - 1)
        t = _st.t.ppf(0.5 + level / 2, dof) + _st.t.ppf(power, dof)
        if t * unit_sd / math.sqrt(strata * n) <= abs(gap):
            return n
    return None


def p_above(e: Effect, bound: float) -> float:
    """One-sided p-value of H0 "true effect ≤ bound" (t on e.dof): small when the effect lies
    above `bound`. At level 0.025 it rejects exactly when the 95 % interval lies above `bound`,
    so the per-row verdicts and their multiplicity-adjusted versions (`family`) agree."""
    if not (math.isfinite(e.se) and math.isfinite(e.dof)):
        return float("nan")
    if e.se == 0:
        return 0.0 if e.iv.mean > bound else 1.0
    return float(_st.t.sf((e.iv.mean - bound) / e.se, e.dof))


def p_below(e: Effect, bound: float) -> float:
    """One-sided p-value of H0 "true effect ≥ bound" (the mirror of `p_above`)."""
    if not (math.isfinite(e.se) and math.isfinite(e.dof)):
        return float("nan")
    if e.se == 0:
        return 0.0 if e.iv.mean < bound else 1.0
    return float(_st.t.cdf((e.iv.mean - bound) / e.se, e.dof))


@dataclass(frozen=True)
class Ratio:
    """A ratio summarised on the log scale: `log` is the t-interval of the log ratios; `mean`,
    `lo`, `hi` are its exponentials (the geometric mean and an interval that cannot reach 0 or
    below, as a raw-scale interval of skewed ratios does)."""

    log: Interval

    @property
    def mean(self) -> float:
        return math.exp(self.log.mean) if math.isfinite(self.log.mean) else float("nan")

    @property
    def lo(self) -> float:
        return math.exp(self.log.lo) if math.isfinite(self.log.lo) else float("nan")

    @property
    def hi(self) -> float:
        return math.exp(self.log.hi) if math.isfinite(self.log.hi) else float("nan")

    @property
    def n(self) -> int:
        return self.log.n

    @property
    def resolved(self) -> bool:
        return self.log.resolved


def log_ratio(ratios: Iterable[float], level: float = LEVEL) -> Ratio:
    """The paired t-interval of log(ratio) over seeds, exponentiated back. A time ratio is
    multiplicative (0.5 and 2 are equally far from 1), so its mean and interval live on the log
    scale; ratios that are not finite and positive are refused (a censored seed must be bounded
    first, never dropped silently)."""
    r = np.asarray(list(ratios), dtype=float)
    if not (np.isfinite(r).all() and (r > 0).all()):
        raise ValueError(f"log_ratio: every ratio must be finite and > 0, got {r.tolist()}")
    return Ratio(interval(np.log(r), level))


@dataclass(frozen=True)
class Fit:
    """Least-squares coefficients (constant first) with their t-intervals on n − p dof."""

    coef: tuple[Interval, ...]
    dof: int


def polyfit(x: Iterable[float], y: Iterable[float], degree: int, level: float = LEVEL) -> Fit:
    """y = c0 + c1·x + … + c_d·x^d by least squares; each coefficient's interval uses its standard
    error from σ̂²·(XᵀX)⁻¹ — the CI of the quadratic term is how a line is tested against a curve."""
    xs, ys = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    n, p = len(xs), degree + 1
    if len(np.unique(xs)) < p:
        return Fit(tuple(Interval(float("nan"), float("nan"), n) for _ in range(p)), max(n - p, 0))
    design = np.vander(xs, p, increasing=True)
    beta, *_ = np.linalg.lstsq(design, ys, rcond=None)
    dof = n - p
    if dof == 0:
        return Fit(tuple(Interval(float(b), float("nan"), n) for b in beta), 0)
    s2 = float(((ys - design @ beta) ** 2).sum()) / dof
    se = np.sqrt(np.diag(s2 * np.linalg.inv(design.T @ design)))
    coef = tuple(Interval(float(b), _half(float(e), dof, level), n) for b, e in zip(beta, se, strict=True))
    return Fit(coef, dof)


def _finite(values: Iterable[float]) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def _half(se: float, dof: float, level: float) -> float:
    return float(_st.t.ppf(0.5 + level / 2, dof)) * se
