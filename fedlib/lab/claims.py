"""The study's claims, each checked against what the notebooks measured: one row per claim with
the effect, its 95 % CI, the budget it was measured at, and a verdict.

Accuracy claims ("accuracy stays stable under X") are non-inferiority checks against the
matching reference run (same model, trainable part, clients and rounds), with a tolerance of
`TOLERANCE` accuracy points:
- holds: the CI of the drop (Welch, over seeds) excludes a drop larger than the tolerance;
- does not hold: the two accuracy intervals separate (`stats.differs`) and the drop is larger
  than the tolerance;
- not resolved at this budget: anything else — one seed, overlapping intervals, or a reference
  that does not learn (its CI reaches the majority-class rate: stability of a model that
  predicts one class says nothing).
Scaling claims are slope checks (`stats.slope`): holds when the slope's CI is above zero and the
line explains the points (R² ≥ `R2_LINEAR`); does not hold when the CI is at or below zero, or
above it with a poor fit; otherwise not resolved. The sync-share claim holds when the CI of
(pack + comm + wait + aggregate) / round is above one half, fails when it is below.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats

HOLDS, FAILS, OPEN = "holds", "does not hold", "not resolved at this budget"
TOLERANCE = 0.03  # accuracy points a "stable" claim allows to lose
R2_LINEAR = 0.9
SYNC = ["pack_s", "comm_s", "wait_s", "aggregate_s"]
ALPHAS, DROPOUTS, EPSILONS = (1.0, 0.3, 0.1), (0.2, 0.5), (8.0, 2.0)

# The CSVs each notebook writes into its profile's output folder, by what they measure.
SOURCES = {"clients": "02_accuracy_vs_clients.csv", "heterogeneity": "03_heterogeneity.csv",
           "dropout": "04_dropout.csv", "privacy": "05_privacy.csv", "comm": "01_comm_scaling_runs.csv",
           "system": "06_system_strategies.csv"}
COLUMNS = ["claim", "effect", "ci_low", "ci_high", "n", "measure", "budget", "verdict", "note"]


def load(out: str | Path) -> dict[str, pd.DataFrame]:
    """The per-run tables of the notebooks that ran (a missing one: its claims are not resolved)."""
    return {k: pd.read_csv(Path(out) / f) for k, f in SOURCES.items() if (Path(out) / f).is_file()}


def _row(claim: str, measure: str, iv: stats.Interval | None, budget: str, verdict: str,
         note: str = "") -> dict:
    iv = iv or stats.Interval(float("nan"), float("nan"), 0)
    return {"claim": claim, "effect": iv.mean, "ci_low": iv.lo, "ci_high": iv.hi, "n": iv.n,
            "measure": measure, "budget": budget, "verdict": verdict, "note": note}


def budget(rows: pd.DataFrame) -> str:
    """Clients, rounds, trainable part and seeds of the runs behind a claim."""
    def vals(col: str) -> str:
        if col not in rows:
            return "?"
        v = sorted({x for x in rows[col].dropna().tolist()}, key=lambda x: (isinstance(x, str), x))
        return "/".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "?"
    seeds = rows["seed"].nunique() if "seed" in rows else 1
    seeds_txt = f"{seeds} seed" + "s" * (seeds != 1)
    return f"{vals('clients')} clients, {vals('rounds')} rounds, {vals('trainable')}, {seeds_txt}"


def stable(claim: str, ref: pd.DataFrame, test: pd.DataFrame, tol: float = TOLERANCE) -> dict:
    """Accuracy of `test` runs vs `ref` runs: the non-inferiority verdict described above."""
    measure = "Δ accuracy vs reference"
    both = pd.concat([ref, test])
    if not len(ref) or not len(test):
        return _row(claim, measure, None, budget(both) if len(both) else "", OPEN, "not run in this profile")
    r, t = stats.interval(ref["accuracy"]), stats.interval(test["accuracy"])
    d = stats.difference(ref["accuracy"], test["accuracy"])
    majority = float(both["majority_rate"].max()) if "majority_rate" in both else float("nan")
    if not d.resolved:
        return _row(claim, measure, d, budget(both), OPEN, "one seed: no interval")
    if not r.lo > majority:
        return _row(claim, measure, d, budget(both), OPEN,
                    f"reference does not learn (CI {r.lo:.3f}..{r.hi:.3f} reaches "
                    f"majority rate {majority:.3f})")
    if d.lo >= -tol:
        return _row(claim, measure, d, budget(both), HOLDS, f"drop CI within {tol:g}")
    if stats.differs(r, t) and d.mean < -tol:
        return _row(claim, measure, d, budget(both), FAILS, f"intervals separate, drop > {tol:g}")
    if stats.differs(r, t):
        return _row(claim, measure, d, budget(both), OPEN,
                    f"intervals separate, but the drop's CI straddles the {tol:g} tolerance")
    return _row(claim, measure, d, budget(both), OPEN, "intervals overlap")


def grows(claim: str, x: Iterable[float], y: Iterable[float], measure: str, bud: str) -> dict:
    """y grows linearly with x: the slope verdict described above."""
    s = stats.slope(x, y)
    if not s.slope.resolved:
        return _row(claim, measure, s.slope, bud, OPEN, f"{s.slope.n} points: no slope interval")
    note = f"R² = {s.r2:.3f}"
    if s.slope.hi <= 0:
        return _row(claim, measure, s.slope, bud, FAILS, note + ", slope not above 0")
    if s.slope.lo > 0:
        return _row(claim, measure, s.slope, bud, HOLDS if s.r2 >= R2_LINEAR else FAILS,
                    note + ("" if s.r2 >= R2_LINEAR else f" < {R2_LINEAR}: not a line"))
    return _row(claim, measure, s.slope, bud, OPEN, note + ", slope CI includes 0")


def _is(df: pd.DataFrame, col: str, value: float) -> pd.Series:
    return np.isclose(df[col].astype(float), value) if col in df else pd.Series(False, index=df.index)


def clients_claims(df: pd.DataFrame) -> list[dict]:
    out = []
    for model, g in df.groupby("model", sort=False):
        lo, hi = g["clients"].min(), g["clients"].max()
        out.append(stable(f"accuracy stable from {lo} to {hi} clients ({model})",
                          g[g["clients"] == lo], g[g["clients"] == hi]))
    return out


def heterogeneity_claims(df: pd.DataFrame) -> list[dict]:
    kind = df.get("partition.kind", pd.Series("iid", index=df.index))
    ref = df[kind == "iid"]
    dirichlet = df[kind == "dirichlet"]
    alphas = sorted(set(ALPHAS) | set(dirichlet.get("partition.alpha", pd.Series(dtype=float)).dropna()),
                    reverse=True)
    return [stable(f"accuracy stable under Dirichlet label skew α={a:g} (vs IID)", ref,
                   dirichlet[_is(dirichlet, "partition.alpha", a)]) for a in alphas]


def dropout_claims(df: pd.DataFrame) -> list[dict]:
    p = df["participation.dropout"].astype(float)
    return [stable(f"accuracy stable under dropout p={q:g} (vs none)", df[p == 0], df[np.isclose(p, q)])
            for q in sorted(set(DROPOUTS) | set(p[p > 0]))]


def privacy_claims(df: pd.DataFrame) -> list[dict]:
    mode = df.get("privacy.mode", pd.Series(np.nan, index=df.index)).fillna("none")
    out = []
    for m, label in (("client", "client-level DP-FedAvg"), ("sample", "DP-SGD")):
        dp = df[mode == m]
        eps = set(EPSILONS) | set(dp.get("privacy.target_epsilon", pd.Series(dtype=float)).dropna())
        for e in sorted(eps, reverse=True):
            test = dp[_is(dp, "privacy.target_epsilon", e)]
            parts = set(test["trainable"]) if "trainable" in test and len(test) else set()
            same = df["trainable"].isin(parts) & df["clients"].isin(set(test["clients"])) if parts else False
            ref = df[(mode == "none") & same] if parts else df.iloc[:0]  # same trainable part and clients
            claim = f"accuracy within {TOLERANCE:g} of non-private under {label} ε={e:g}"
            out.append(stable(claim, ref, test))
    return out


def comm_claims(df: pd.DataFrame) -> list[dict]:
    out = []
    big = df.loc[df["payload_bytes"].idxmax(), "model"]
    for agg, g in df[df["model"] == big].groupby("aggregation"):
        out.append(grows(f"comm time linear in clients ({agg}, {big})", g["clients"], g["comm_wait_s"],
                         "slope, comm+wait s per client", budget(g)))
    top = df[df["clients"] == df["clients"].max()]
    for agg, g in top.groupby("aggregation"):
        out.append(grows(f"comm time proportional to model size ({agg}, {g['clients'].iloc[0]} clients)",
                         g["payload_bytes"] / 1e9, g["comm_wait_s"], "slope, comm+wait s per GB of payload",
                         budget(g) + f", models {'/'.join(sorted(set(g['model'])))}"))
    return out


def sync_claims(df: pd.DataFrame) -> list[dict]:
    out = []
    top = df[df["clients"] == df["clients"].max()]
    for strategy in ("collective (baseline)", "p2p star"):
        g = top[top["strategy"] == strategy]
        claim = f"comm + sync dominate the round at scale ({strategy})"
        measure = "(pack+comm+wait+aggregate) / round"
        if not len(g):
            out.append(_row(claim, measure, None, "", OPEN, "not run in this profile"))
            continue
        iv = stats.interval(g[SYNC].sum(axis=1) / g["round_s"])
        verdict = OPEN if not iv.resolved else HOLDS if iv.lo > 0.5 else FAILS if iv.hi < 0.5 else OPEN
        note = "" if iv.resolved else "one seed: no interval"
        out.append(_row(claim, measure, iv, budget(g), verdict, note))
    return out


CHECKS = {"clients": clients_claims, "heterogeneity": heterogeneity_claims, "dropout": dropout_claims,
          "privacy": privacy_claims, "comm": comm_claims, "system": sync_claims}


def table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The claims table from the notebooks' per-run tables (`load`); one row per claim."""
    rows = []
    for key, check in CHECKS.items():
        if key in tables and len(tables[key]):
            rows += check(tables[key])
        else:
            note = f"{SOURCES[key]} missing: notebook not run"
            rows.append(_row(f"{key} claims", "", None, "", OPEN, note))
    return pd.DataFrame(rows, columns=COLUMNS)


def show(claims_table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader wants it: the effect and its CI in one column."""
    def fmt(r: pd.Series) -> str:
        if r["n"] == 0 or pd.isna(r["effect"]):
            return "—"
        ci = "no CI" if pd.isna(r["ci_low"]) else f"[{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]"
        return f"{r['effect']:+.3g} {ci}"
    out = claims_table.assign(**{"effect (95% CI)": claims_table.apply(fmt, axis=1)}).fillna(
        {"budget": "", "note": "", "measure": ""})
    return out[["claim", "measure", "effect (95% CI)", "n", "budget", "verdict", "note"]]
