"""The communication claims of the study, each an equivalence test against a declared margin
(`verdict.TOLERANCES`) so that "flat", "curved" and "not proportional" can be verdicts too.

Points are one per (clients or model, seed): the mean of a run's timed rounds, averaged over the
strata (algorithm × partition) that ran at that point. Time is `comm_s`, communication without
the load-imbalance wait; the note gives the same fit on comm + wait, so the two can be told apart.
- "linear in clients" (the p2p star, whose rank 0 receives every client's update): the rise over
  the client range is positive and the quadratic term's CI lies within ±5 % of that rise (the
  fit's distance from a line at mid-range); flat (the rise within ±20 % of the mean) or a
  quadratic term entirely beyond ±5 % does not hold. R² is no test: √x and x² pass R² ≥ 0.9.
- "collective comm independent of clients" (one allreduce a round whatever the clients, as the
  cost model `scaling` predicts): the change over the client range, as a fraction of the mean,
  has its CI inside ±20 % (holds) or entirely outside (does not hold).
- "proportional to model size": the log-log slope of comm s on payload bytes at the largest client
  count has its CI inside [0.8, 1.25] (holds) or entirely outside (does not hold).
- "comm + sync dominate the round": the CI of (pack + comm + wait + aggregate) / round above 0.5
  holds, below fails — for the workload stated in the budget (local steps × batch × tokens) and
  its measured compute-to-comm ratio, not for every workload.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import stats
from .verdict import FAILS, HOLDS, OPEN, TOLERANCES, budget, produced, row, workload

SYNC = ["pack_s", "comm_s", "wait_s", "aggregate_s"]
STRATA = ("algorithm", "partition.kind")


def _scale(iv: stats.Interval, k: float) -> stats.Interval:
    return stats.Interval(iv.mean * k, iv.half * abs(k), iv.n)


def _inside(iv: stats.Interval, key: str) -> bool:
    t = TOLERANCES[key]
    return t.lo <= iv.lo and iv.hi <= t.hi


def _outside(iv: stats.Interval, key: str) -> bool:
    t = TOLERANCES[key]
    return iv.hi < t.lo or iv.lo > t.hi


def _ci(iv: stats.Interval, unit: str = "") -> str:
    ci = f"[{iv.lo:.3g}, {iv.hi:.3g}]" if iv.resolved else "(no CI)"
    return f"{iv.mean:.3g}{unit} {ci}"


def points(g: pd.DataFrame, x: str) -> tuple[pd.DataFrame, int]:
    """One row per (x, seed): the mean over strata; and the number of strata."""
    keys = [k for k in (x, "seed") if k in g]
    strata = [k for k in STRATA if k in g]
    k = len(g[strata].drop_duplicates()) if strata else 1
    cols = [c for c in ("comm_s", "comm_wait_s", "payload_bytes") if c in g]
    return g.groupby(keys, as_index=False)[cols].mean(), k


def _produced(g: pd.DataFrame, k: int) -> dict:
    return produced(g, g["seed"].nunique() if "seed" in g else 1, k)


def linear(claim: str, g: pd.DataFrame) -> dict:
    """comm_s linear in clients: the rules above."""
    pts, k = points(g, "clients")
    x, y = pts["clients"].to_numpy(float), pts["comm_s"].to_numpy(float)
    b, c = stats.polyfit(x, y, 1).coef[1], stats.polyfit(x, y, 2).coef[2]
    tol, bud, prov = TOLERANCES["curvature"].text + "; rise > 0", budget(g), _produced(g, k)
    measure = "quadratic term: distance from a line at mid-range, fraction of the rise (OLS, comm s)"
    if not c.resolved:
        return row(claim, measure, None, tol, bud, OPEN, "needs ≥ 2 seeds at ≥ 3 client counts", prov)
    span, mean = float(np.ptp(x)), float(y.mean())
    rise = _scale(b, span / mean)
    wait = stats.slope(pts["clients"], pts["comm_wait_s"]).slope if "comm_wait_s" in pts else None
    note = f"slope {_ci(b, ' s/client')}" + (f"; with wait: {_ci(wait, ' s/client')}" if wait else "")
    if _inside(rise, "flat"):
        return row(claim, "rise over the client range, fraction of mean comm s", rise, tol, bud, FAILS,
                   "flat: the rise stays within ±20 % of the mean; " + note, prov)
    if b.mean <= 0:
        verdict = FAILS if b.hi < 0 else OPEN
        return row(claim, "rise over the client range, fraction of mean comm s", rise, tol, bud, verdict,
                   "comm s does not grow with clients; " + note, prov)
    curve = _scale(c, span**2 / 4 / (b.mean * span))
    if b.lo > 0 and _inside(curve, "curvature"):
        return row(claim, measure, curve, tol, bud, HOLDS, "a line: " + note, prov)
    if b.lo > 0 and _outside(curve, "curvature"):  # a rise that may be ~0 makes no scale for a curve
        return row(claim, measure, curve, tol, bud, FAILS, "a curve, not a line: " + note, prov)
    return row(claim, measure, curve, tol, bud, OPEN, "the quadratic term's CI straddles ±5 %: " + note, prov)


def flat(claim: str, g: pd.DataFrame) -> dict:
    """comm_s independent of clients: the change over the range within ±20 % of the mean."""
    pts, k = points(g, "clients")
    x, y = pts["clients"].to_numpy(float), pts["comm_s"].to_numpy(float)
    b = stats.polyfit(x, y, 1).coef[1]
    tol, bud, prov = TOLERANCES["flat"].text, budget(g), _produced(g, k)
    measure = "change over the client range (OLS slope × range), fraction of mean comm s"
    if not b.resolved:
        return row(claim, measure, None, tol, bud, OPEN, "needs ≥ 3 points at ≥ 2 client counts", prov)
    change = _scale(b, float(np.ptp(x)) / float(y.mean()))
    wait = stats.slope(pts["clients"], pts["comm_wait_s"]).slope if "comm_wait_s" in pts else None
    note = f"slope {_ci(b, ' s/client')}" + (f"; with wait: {_ci(wait, ' s/client')}" if wait else "")
    verdict = HOLDS if _inside(change, "flat") else FAILS if _outside(change, "flat") else OPEN
    return row(claim, measure, change, tol, bud, verdict, note, prov)


def proportional(claim: str, g: pd.DataFrame) -> dict:
    """comm_s ∝ payload: the log-log slope's CI against [0.8, 1.25]."""
    pts, k = points(g, "model")
    ok = (pts["comm_s"] > 0) & (pts["payload_bytes"] > 0)
    s = stats.slope(np.log(pts.loc[ok, "payload_bytes"]), np.log(pts.loc[ok, "comm_s"])).slope
    tol, prov = TOLERANCES["size"].text, _produced(g, k)
    bud = budget(g) + f", models {'/'.join(sorted(set(g['model'])))}"
    measure = "log-log slope of comm s on payload bytes (OLS)"
    if not s.resolved:
        return row(claim, measure, s, tol, bud, OPEN, f"{s.n} points: no slope interval", prov)
    verdict = HOLDS if _inside(s, "size") else FAILS if _outside(s, "size") else OPEN
    return row(claim, measure, s, tol, bud, verdict, "", prov)


def comm_claims(df: pd.DataFrame) -> list[dict]:
    """01's runs: linear (p2p) and flat (collective) in clients for the largest model; proportional
    to model size for each mode at the largest client count."""
    out = []
    df = df.reset_index(drop=True)
    big = df.loc[df["payload_bytes"].idxmax(), "model"]
    for agg, g in df[df["model"] == big].groupby("aggregation"):
        if agg == "p2p":
            out.append(linear(f"p2p star comm time linear in clients ({big})", g))
        else:
            out.append(flat(f"{agg} comm time independent of clients ({big})", g))
    top = df[df["clients"] == df["clients"].max()]
    for agg, g in top.groupby("aggregation"):
        claim = f"comm time proportional to model size ({agg}, {g['clients'].iloc[0]} clients)"
        out.append(proportional(claim, g))
    return out


def sync_claims(df: pd.DataFrame) -> list[dict]:
    """06's baselines at the largest client count: the share of the round spent synchronizing."""
    out = []
    top = df[df["clients"] == df["clients"].max()]
    tol = TOLERANCES["sync"].text
    for strategy in ("collective (baseline)", "p2p star"):
        g = top[top["strategy"] == strategy]
        claim = f"comm + sync dominate the round at this workload ({strategy})"
        measure = "(pack+comm+wait+aggregate) / round"
        if not len(g):
            out.append(row(claim, measure, None, tol, "", OPEN, "not run in this profile"))
            continue
        iv = stats.interval(g[SYNC].sum(axis=1) / g["round_s"])
        ratio = float(g["compute_s"].mean() / g["comm_s"].mean()) if "compute_s" in g else float("nan")
        bud = f"{budget(g)}; workload {workload(g)}, compute/comm {ratio:.3g}"
        verdict = OPEN if not iv.resolved else HOLDS if iv.lo > 0.5 else FAILS if iv.hi < 0.5 else OPEN
        note = "one seed: no interval" if not iv.resolved else ""
        if iv.resolved and verdict == OPEN:
            n = stats.seeds_needed(iv.mean - 0.5, iv.half * math.sqrt(iv.n) / stats.tcrit(iv.n))
            note = f"CI straddles 0.5; ~{n} seeds would resolve it (80 % power)" if n else "share at 0.5"
        out.append(row(claim, measure, iv, tol, bud, verdict, note, produced(g)))
    return out
