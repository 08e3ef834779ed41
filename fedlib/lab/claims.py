"""The study's claims, each checked against what the notebooks measured: one row per claim with
the effect, its 95 % CI, the tolerance it is judged against (`verdict.TOLERANCES`), the budget
and what produced it (`verdict.produced`), and a verdict.

Accuracy claims are one-sided non-inferiority tests of "test arm − reference arm" (same model,
trainable part, clients and rounds) against the margin −0.03:
- holds: the CI of the effect lies entirely at or above −0.03;
- does not hold: the CI lies entirely below −0.03;
- not resolved at this budget: the CI straddles −0.03 (the note says how many seeds per stratum
  would resolve it at the observed effect and spread, 80 % power), one seed, or a reference that
  does not learn (its CI reaches the majority-class rate: a model that predicts one class is
  trivially "stable").
The effect is the paired difference over seeds where both arms ran the same seeds (seed s gives
the same initial weights and partition in both), else Welch's; the measure column says which.
Runs are grouped into strata by (model, algorithm, partition) — the claim's own axis excluded —
and the strata are combined (`stats.stratified`: mean of the per-stratum effects, pooled-variance
interval), so n = seeds × strata. Communication and sync claims: `comm_claims`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import comm_claims, stats
from .verdict import FAILS, HOLDS, OPEN, PRODUCED, TOLERANCES, budget, produced, row

__all__ = ["FAILS", "HOLDS", "OPEN", "TOLERANCES", "budget", "table", "show", "load", "non_inferior"]

TOLERANCE = -TOLERANCES["accuracy"].lo  # accuracy points a non-inferiority claim allows to lose
STRATA = ("model", "algorithm", "partition.kind")
ALPHAS, DROPOUTS, EPSILONS = (1.0, 0.3, 0.1), (0.2, 0.5), (8.0, 2.0)

# The CSVs each notebook writes into its profile's output folder, by what they measure.
SOURCES = {"clients": "02_accuracy_vs_clients.csv", "heterogeneity": "03_heterogeneity.csv",
           "dropout": "04_dropout.csv", "privacy": "05_privacy.csv", "comm": "01_comm_scaling_runs.csv",
           "system": "06_system_strategies.csv", "async": "08_async.csv"}
COLUMNS = ["claim", "effect", "ci_low", "ci_high", "n", "measure", "tolerance", "budget", "verdict", "note",
           "profile", *PRODUCED]


def load(out: str | Path) -> dict[str, pd.DataFrame]:
    """The per-run tables of the notebooks that ran (a missing one: its claims are not resolved);
    08_async's runs get their per-seed time ratios and their accuracy at sync's virtual time (the
    equal-time budget every arm is scored at) from 08_async_paired.csv."""
    out = Path(out)
    tables = {k: pd.read_csv(out / f) for k, f in SOURCES.items() if (out / f).is_file()}
    paired = out / "08_async_paired.csv"
    if "async" in tables and paired.is_file():
        per_seed = pd.read_csv(paired)
        keep = [c for c in ("arm", "seed", "time_ratio", "virtual_s", "accuracy_at_budget") if c in per_seed]
        merged = tables["async"].drop(columns=["time_ratio", "virtual_s"], errors="ignore").merge(
            per_seed[keep], on=["arm", "seed"], how="left")
        if "accuracy_at_budget" in merged:  # an async arm may run past sync's time: score it at that time
            merged = merged.assign(accuracy=merged.pop("accuracy_at_budget"))
        tables["async"] = merged
    return tables


def _key(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    return df[keys].astype(str).agg("|".join, axis=1) if keys else pd.Series("", index=df.index)


def effect(ref: pd.DataFrame, test: pd.DataFrame, strata: tuple[str, ...] = STRATA,
           value: str = "accuracy") -> tuple[stats.Effect, int]:
    """test − ref per stratum, combined (`stats.stratified`); paired when every stratum has the
    same seeds, once each, in both arms. Also returns how many strata had one arm only (left out)."""
    keys = [k for k in strata if k in ref and k in test]
    rk, tk = _key(ref, keys), _key(test, keys)
    common = [k for k in dict.fromkeys(rk) if k in set(tk)]
    pairs = [(ref[rk == k], test[tk == k]) for k in common]
    paired = "seed" in ref and "seed" in test and all(
        r["seed"].is_unique and t["seed"].is_unique and set(r["seed"]) == set(t["seed"]) for r, t in pairs)
    if paired:
        pairs = [(r.sort_values("seed"), t.sort_values("seed")) for r, t in pairs]
    lone = len(set(rk) | set(tk)) - len(common)
    return stats.stratified([(r[value], t[value]) for r, t in pairs], paired), lone


def non_inferior(claim: str, ref: pd.DataFrame, test: pd.DataFrame, strata: tuple[str, ...] = STRATA,
           tol: float = TOLERANCE) -> dict:
    """Non-inferiority of `test`'s accuracy against `ref`'s (the rules above)."""
    both = pd.concat([ref, test])
    tol_txt = f"Δ accuracy ≥ −{tol:g}"
    if not len(ref) or not len(test):
        return row(claim, "Δ accuracy vs reference", None, tol_txt, budget(both) if len(both) else "", OPEN,
                   "not run in this profile", produced(both) if len(both) else {})
    e, lone = effect(ref, test, strata)
    seeds = both["seed"].nunique() if "seed" in both else 1
    how = "paired over seeds" if e.method == "paired" else "Welch (seeds differ)"
    measure = (f"Δ accuracy vs reference, {how}"
               + (f", mean of {e.strata} strata" if e.strata > 1 else ""))
    prov = produced(both, seeds, e.strata)
    bud = budget(both)
    iv = e.iv
    left = f"; {lone} strata with one arm only left out" if lone else ""
    if not iv.resolved:
        return row(claim, measure, iv, tol_txt, bud, OPEN, "one seed: no interval" + left, prov)
    r = stats.interval(ref["accuracy"])
    majority = float(both["majority_rate"].max()) if "majority_rate" in both else float("nan")
    if not r.lo > majority:
        return row(claim, measure, iv, tol_txt, bud, OPEN, f"reference does not learn (CI {r.lo:.3f}.."
                   f"{r.hi:.3f} reaches majority rate {majority:.3f})" + left, prov)
    sd = f"sd of one seed's difference {e.unit_sd:.3g}"
    if iv.lo >= -tol:
        return row(claim, measure, iv, tol_txt, bud, HOLDS, f"non-inferior: CI ≥ −{tol:g}; {sd}" + left, prov)
    if iv.hi < -tol:
        return row(claim, measure, iv, tol_txt, bud, FAILS, f"inferior: whole CI below −{tol:g}; {sd}" + left,
                   prov)
    n = stats.seeds_needed(iv.mean + tol, e.unit_sd, e.strata)
    power = (f"~{n} seeds per stratum would resolve it (80 % power at the observed effect and spread)"
             if n else "the effect sits at the margin: no number of seeds resolves it")
    return row(claim, measure, iv, tol_txt, bud, OPEN, f"CI straddles −{tol:g}; {sd}; {power}" + left, prov)


def _is(df: pd.DataFrame, col: str, value: float) -> pd.Series:
    return np.isclose(df[col].astype(float), value) if col in df else pd.Series(False, index=df.index)


def clients_claims(df: pd.DataFrame) -> list[dict]:
    out = []
    for model, g in df.groupby("model", sort=False):
        lo, hi = g["clients"].min(), g["clients"].max()
        out.append(non_inferior(f"accuracy non-inferior at {hi} vs {lo} clients ({model})",
                          g[g["clients"] == lo], g[g["clients"] == hi]))
    return out


def heterogeneity_claims(df: pd.DataFrame) -> list[dict]:
    kind = df.get("partition.kind", pd.Series("iid", index=df.index))
    ref = df[kind == "iid"]
    dirichlet = df[kind == "dirichlet"]
    alphas = sorted(set(ALPHAS) | set(dirichlet.get("partition.alpha", pd.Series(dtype=float)).dropna()),
                    reverse=True)
    return [non_inferior(f"accuracy non-inferior under Dirichlet label skew α={a:g} vs IID", ref,
                   dirichlet[_is(dirichlet, "partition.alpha", a)], strata=("model", "algorithm"))
            for a in alphas]


def dropout_claims(df: pd.DataFrame) -> list[dict]:
    p = df["participation.dropout"].astype(float)
    return [non_inferior(f"accuracy non-inferior under dropout p={q:g} vs none", df[p == 0],
                         df[np.isclose(p, q)]) for q in sorted(set(DROPOUTS) | set(p[p > 0]))]


def privacy_claims(df: pd.DataFrame) -> list[dict]:
    mode = df.get("privacy.mode", pd.Series(np.nan, index=df.index)).fillna("none")
    out = []
    for m, label in (("client", "client-level DP-FedAvg"), ("sample", "DP-SGD")):
        dp = df[mode == m]
        eps = set(EPSILONS) | set(dp.get("privacy.target_epsilon", pd.Series(dtype=float)).dropna())
        for e in sorted(eps, reverse=True):
            at_e = dp[_is(dp, "privacy.target_epsilon", e)]
            parts = sorted(set(at_e["trainable"])) if "trainable" in at_e and len(at_e) else [None]
            for part in parts:  # a linear probe and a fine-tuned layer are two claims, never pooled
                test = at_e if part is None else at_e[at_e["trainable"] == part]
                same = (df["trainable"] == part) & df["clients"].isin(set(test["clients"]))
                ref = df[(mode == "none") & same] if part is not None else df.iloc[:0]
                deltas = sorted(set(test["delta"].dropna())) if "delta" in test and len(test) else []
                delta = "/".join(f"{d:g}" for d in deltas) or "?"
                what = f", {part}" if len(parts) > 1 else ""
                claim = f"accuracy non-inferior under {label} (ε={e:g}, δ={delta}{what}) vs non-private"
                out.append(non_inferior(claim, ref, test))
    return out


SYNC_ARM = "sync FedAvg"  # 08_async's reference arm


def async_claims(df: pd.DataFrame) -> list[dict]:
    """08_async: per arm other than sync FedAvg (asynchronous, or sync with a deadline), (1) it
    reaches the sync run's final accuracy in less virtual time (superiority of the paired time
    ratio: the CI lies below 1) and (2) its final accuracy is non-inferior to sync's. `df`:
    08_async.csv's runs with 08_async_paired.csv's per-seed columns."""
    ref = df[df["arm"] == SYNC_ARM]
    out = []
    for arm in [a for a in dict.fromkeys(df["arm"]) if a != SYNC_ARM]:
        test = df[df["arm"] == arm]
        out.append(faster(f"{arm} reaches sync FedAvg's final accuracy in less virtual time", ref, test))
        out.append(non_inferior(f"accuracy of {arm} at sync FedAvg's virtual time non-inferior to sync's",
                                ref, test, strata=("model",)))
    return out


def faster(claim: str, ref: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Superiority of `test`'s time to the reference's final accuracy: the per-seed ratio of virtual
    times (08_async's `time_ratio`), t-interval over seeds. A seed whose run never reached the
    target has only a lower bound (its whole run over sync's whole run): such a claim can fail but
    never hold."""
    tol = TOLERANCES["time"]
    both = pd.concat([ref, test])
    measure = "virtual time to sync's final accuracy / sync's, per seed (paired)"
    if not len(ref) or not len(test):
        return row(claim, measure, None, tol.text, "", OPEN, "not run in this profile")
    sync_s = ref.set_index("seed")["virtual_s"]
    t = test.sort_values("seed")
    ratio = t["time_ratio"].astype(float)
    censored = ~np.isfinite(ratio)
    bound = t["virtual_s"].astype(float) / t["seed"].map(sync_s).astype(float)
    iv = stats.interval(ratio.where(~censored, bound))
    prov, bud = produced(both), budget(both)
    cens = f"; {int(censored.sum())} of {len(t)} seeds never reached it (counted at a lower bound)" * bool(
        censored.any())
    if not iv.resolved:
        return row(claim, measure, iv, tol.text, bud, OPEN, "one seed: no interval" + cens, prov)
    if iv.hi < tol.hi and not censored.any():
        return row(claim, measure, iv, tol.text, bud, HOLDS, f"faster: whole CI below {tol.hi:g}", prov)
    if iv.lo >= tol.hi:
        return row(claim, measure, iv, tol.text, bud, FAILS, f"not faster: whole CI at or above {tol.hi:g}"
                   + cens, prov)
    why = "a seed's ratio is only a lower bound" if iv.hi < tol.hi else f"CI straddles {tol.hi:g}"
    return row(claim, measure, iv, tol.text, bud, OPEN, why + cens, prov)


CHECKS = {"clients": clients_claims, "heterogeneity": heterogeneity_claims, "dropout": dropout_claims,
          "privacy": privacy_claims, "comm": comm_claims.comm_claims, "system": comm_claims.sync_claims,
          "async": async_claims}


def table(tables: dict[str, pd.DataFrame], profile: str = "") -> pd.DataFrame:
    """The claims table from the notebooks' per-run tables (`load`); one row per claim."""
    rows = []
    for key, check in CHECKS.items():
        if key in tables and len(tables[key]):
            rows += check(tables[key])
        else:
            note = f"{SOURCES[key]} missing: notebook not run"
            rows.append(row(f"{key} claims", "", None, "", "", OPEN, note))
    return pd.DataFrame(rows, columns=COLUMNS).assign(profile=profile)


def show(claims_table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader wants it: the effect and its CI in one column, then what produced it."""
    def fmt(r: pd.Series) -> str:
        if r["n"] == 0 or pd.isna(r["effect"]):
            return "—"
        ci = "no CI" if pd.isna(r["ci_low"]) else f"[{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]"
        return f"{r['effect']:+.3g} {ci}"
    out = claims_table.assign(**{"effect (95% CI)": claims_table.apply(fmt, axis=1)}).fillna(
        {c: "" for c in ("budget", "note", "measure", "tolerance", *PRODUCED)})
    return out[["claim", "measure", "effect (95% CI)", "n", "tolerance", "verdict", "note", "budget",
                "profile", *PRODUCED]]
