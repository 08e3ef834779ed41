"""The study's claims, each checked against what the notebooks measured: one row per claim with
the effect, its 95 % CI, the tolerance it is judged against (`verdict.TOLERANCES`), the budget
and what produced it (`verdict.produced`), and a verdict.

Accuracy claims are one-sided non-inferiority tests of "test arm − reference arm" (same model,
trainable part, clients and rounds) against the margin −0.03:
- holds: the CI of the effect lies entirely at or above −0.03;
- does not hold: the CI lies entirely below −0.03;
- not resolved at this budget: the CI straddles −0.03, one seed, or a reference that does not
  learn (its CI reaches the majority-class rate: a model that predicts one class is trivially
  "stable").
The effect is the paired difference over seeds where both arms ran the same seeds (seed s gives
the same initial weights and partition in both), else Welch's; the measure column says which.
Runs are grouped into strata by (model, algorithm, partition) — the claim's own axis excluded —
and the strata are combined (`stats.stratified`: mean of the per-stratum effects, pooled-variance
interval), so n = seeds × strata. The CIs cover seed-to-seed variation only: the test set is
fixed, so its sampling error is not in them. Each note states the row's design sensitivity, the
minimum detectable effect at the seeds it ran (`power.mde`), never a seed count worked back from
the effect it happened to observe. Time claims (08): `time_claims` and FedBuff's goal (`race.goal`);
communication (01): `comm_claims`; synchronization's share of the round (06): `sync_claims`.

claims.csv's columns (`COLUMNS`), besides the effect and its interval:
- claim: the claim, ending with what trained (`trainable.text`: "linear probe on frozen features
  (2,695 params)", "top-1 encoder layer + head (1.8M params)");
- verdict: the row's own verdict; holm: the accuracy family's Holm-adjusted verdict (`family`),
  blank outside that family; p_holds / p_fails: the row's one-sided p-values against the margin
  (H0 "effect ≤ margin" / "≥ margin"), p_holm: Holm's adjusted p in the direction of its effect;
- basis: `measured`, or `projected (model, parameters)` (`verdict.projected`) for a row computed
  by a fitted model; a projected row is its own claim and never stands in for a measured one;
- shares_reference: `ref N: k rows` on the rows whose reference arm is the same runs;
- what produced the row: `verdict.PRODUCED` (profile, model, data, trainable, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import comm_claims, family, power, race, stats, sync_claims, time_claims, trainable, virtual_time
from .verdict import FAILS, HOLDS, MEASURED, NO_LEARNING, OPEN, PRODUCED, TOLERANCES, budget, produced, row

__all__ = ["FAILS", "HOLDS", "MEASURED", "NO_LEARNING", "OPEN", "TOLERANCES", "budget", "table", "show",
           "load", "non_inferior", "row"]

TOLERANCE = -TOLERANCES["accuracy"].lo  # accuracy points a non-inferiority claim allows to lose
STRATA = ("model", "algorithm", "partition.kind")
ALPHAS, DROPOUTS, EPSILONS = (1.0, 0.3, 0.1), (0.2, 0.5), (8.0, 2.0)

# The CSVs each notebook writes into its profile's output folder, by what they measure.
SOURCES = {"clients": "02_accuracy_vs_clients.csv", "heterogeneity": "03_heterogeneity.csv",
           "dropout": "04_dropout.csv", "privacy": "05_privacy.csv", "comm": "01_comm_scaling_runs.csv",
           "system": "06_system_strategies.csv", "async": "08_async.csv"}
CURVES = "08_async_curves.csv"  # every arm's accuracy against virtual time, per seed
COLUMNS = ["claim", "effect", "ci_low", "ci_high", "n", "measure", "tolerance", "budget", "verdict", "holm",
           "p_holds", "p_fails", "p_holm", "basis", "shares_reference", "note", "profile", *PRODUCED]


def load(out: str | Path) -> dict[str, pd.DataFrame]:
    """The per-run tables of the notebooks that ran (a missing one: its claims are not resolved);
    08_async's runs get their accuracy at sync's virtual time (the equal-time budget every arm is
    scored at) and, when 08 fixed one in advance, the `target` from 08_async_paired.csv; its
    curves (`CURVES`, for the time rows) come as the table `async_curves`."""
    out = Path(out)
    tables = {k: pd.read_csv(out / f) for k, f in SOURCES.items() if (out / f).is_file()}
    if (out / CURVES).is_file():
        tables["async_curves"] = pd.read_csv(out / CURVES)
    paired = out / "08_async_paired.csv"
    if "async" in tables and paired.is_file():
        per_seed = pd.read_csv(paired)
        keep = [c for c in ("arm", "seed", "accuracy_at_budget", "target") if c in per_seed]
        merged = tables["async"].drop(columns=["target"], errors="ignore").merge(
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
    """Non-inferiority of `test`'s accuracy against `ref`'s (the rules above); the claim text gets
    what trained appended."""
    both = pd.concat([ref, test])
    tol_txt = f"Δ accuracy ≥ −{tol:g}"
    if not len(ref) or not len(test):
        return row(claim, "Δ accuracy vs reference", None, tol_txt, budget(both) if len(both) else "", OPEN,
                   "not run in this profile", produced(both) if len(both) else {})
    claim = f"{claim} — {trainable.text(both)}"
    e, lone = effect(ref, test, strata)
    seeds = both["seed"].nunique() if "seed" in both else 1
    how = "paired over seeds" if e.method == "paired" else "Welch (seeds differ)"
    measure = (f"Δ accuracy vs reference, {how}" + (f", mean of {e.strata} strata" if e.strata > 1 else "")
               + "; CI over seeds only (test set fixed)")
    prov = produced(both, seeds, e.strata)
    bud = budget(both)
    iv = e.iv
    left = f"; {lone} strata with one arm only left out" if lone else ""
    tests = {"p_holds": stats.p_above(e, -tol), "p_fails": stats.p_below(e, -tol),
             family.REF_KEY: family.fingerprint(ref)}
    if not iv.resolved:
        return {**row(claim, measure, iv, tol_txt, bud, OPEN, "one seed: no interval" + left, prov), **tests}
    r = stats.interval(ref["accuracy"])
    majority = float(both["majority_rate"].max()) if "majority_rate" in both else float("nan")
    if not r.lo > majority:
        return {**row(claim, measure, iv, tol_txt, bud, OPEN, f"reference does not learn (CI {r.lo:.3f}.."
                      f"{r.hi:.3f} reaches majority rate {majority:.3f})" + left, prov), **tests}
    design = (f"sd of one seed's difference {e.unit_sd:.3g}; "
              + power.mde_text(seeds, e.unit_sd, e.dof, e.strata))
    if iv.lo >= -tol:
        verdict, why = HOLDS, f"non-inferior: CI ≥ −{tol:g}"
    elif iv.hi < -tol:
        verdict, why = FAILS, f"inferior: whole CI below −{tol:g}"
    else:
        verdict, why = OPEN, f"CI straddles −{tol:g}"
    return {**row(claim, measure, iv, tol_txt, bud, verdict, f"{why}; {design}" + left, prov), **tests}


def _is(df: pd.DataFrame, col: str, value: float) -> pd.Series:
    return np.isclose(df[col].astype(float), value) if col in df else pd.Series(False, index=df.index)


def clients_claims(df: pd.DataFrame) -> list[dict]:
    out = []
    for model, g in df.groupby("model", sort=False):
        lo, hi = g["clients"].min(), g["clients"].max()
        out.append(non_inferior(f"accuracy non-inferior at {hi} vs {lo} clients ({model})",
                          g[g["clients"] == lo], g[g["clients"] == hi]))
    return out


def tiers(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The table split by what trained (`trainable`), in the order the runs came: a linear probe
    and a fine-tuned layer are two claims, never pooled (each tier has its own seeds)."""
    if "trainable" not in df or not df["trainable"].notna().any():
        return [df]
    return [df[df["trainable"] == part] for part in dict.fromkeys(df["trainable"].dropna())]


def heterogeneity_claims(df: pd.DataFrame) -> list[dict]:
    """Per tier, each α it ran against that tier's IID runs; an α of `ALPHAS` no tier ran: one
    "not run" row."""
    out, ran = [], set()
    for d in tiers(df):
        kind = d.get("partition.kind", pd.Series("iid", index=d.index))
        ref, dirichlet = d[kind == "iid"], d[kind == "dirichlet"]
        alphas = set(dirichlet.get("partition.alpha", pd.Series(dtype=float)).dropna())
        ran |= alphas
        out += [non_inferior(f"accuracy non-inferior under Dirichlet label skew α={a:g} vs IID", ref,
                             dirichlet[_is(dirichlet, "partition.alpha", a)], strata=("model", "algorithm"))
                for a in sorted(alphas, reverse=True)]
    return out + [non_inferior(f"accuracy non-inferior under Dirichlet label skew α={a:g} vs IID",
                               df.iloc[:0], df.iloc[:0]) for a in sorted(set(ALPHAS) - ran, reverse=True)]


def dropout_claims(df: pd.DataFrame) -> list[dict]:
    """Per tier, each dropout it ran against that tier's runs without dropout (see above)."""
    out, ran = [], set()
    for d in tiers(df):
        p = d["participation.dropout"].astype(float)
        qs = set(p[p > 0])
        ran |= qs
        out += [non_inferior(f"accuracy non-inferior under dropout p={q:g} vs none", d[p == 0],
                             d[np.isclose(p, q)]) for q in sorted(qs)]
    none = df.iloc[:0]
    return out + [non_inferior(f"accuracy non-inferior under dropout p={q:g} vs none", none, none)
                  for q in sorted(set(DROPOUTS) - ran)]


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
                claim = f"accuracy non-inferior under {label} (ε={e:g}, δ={delta}) vs non-private"
                out.append(non_inferior(claim, ref, test))
    return out


SYNC_ARM = "sync FedAvg"  # 08_async's reference arm


def async_claims(df: pd.DataFrame, curves: pd.DataFrame | None = None) -> list[dict]:
    """08_async: per arm other than sync FedAvg (asynchronous, or sync with a deadline), (1) it
    reaches the target accuracy in less virtual time than sync (`time_claims`, from `curves`:
    08_async_curves.csv) and (2) its accuracy at sync's virtual time is non-inferior to sync's.
    `df`: 08_async.csv's runs with 08_async_paired.csv's per-seed columns. The target: a `target`
    column (fixed in advance, `virtual_time.pilot_target`) when 08 wrote one, else each seed's
    sync final accuracy (what 08 did before the target was fixed in advance)."""
    ref = df[df["arm"] == SYNC_ARM]
    fixed = df["target"].dropna().unique() if "target" in df else []
    if len(fixed) > 1:
        raise ValueError(f"08_async_paired.csv: one target for every arm and seed, got {sorted(fixed)}")
    goal = float(fixed[0]) if len(fixed) else None
    how = (f"{goal:.4g}, fixed in advance" if goal is not None
           else "each seed's sync final accuracy, chosen after the run")
    times = left = None
    if curves is not None and len(curves):
        times = virtual_time.paired_times(curves, SYNC_ARM, goal)
        left = virtual_time.learning_left(curves[curves["arm"] == SYNC_ARM])
    out = []
    for arm in [a for a in dict.fromkeys(df["arm"]) if a != SYNC_ARM]:
        test = df[df["arm"] == arm]
        what = trainable.text(pd.concat([ref, test]))
        reach = f"the fixed target {goal:.4g}" if goal is not None else "sync FedAvg's final accuracy"
        claim = f"{arm} reaches {reach} in less virtual time — {what}"
        if times is None or left is None:
            out.append(row(claim, time_claims.MEASURE, None, TOLERANCES["time"].text, budget(test), OPEN,
                           f"{CURVES} missing: no times to the target", produced(test)))
        else:
            mine = times[times["arm"] == arm]
            out.append(time_claims.faster(claim, mine, left, pd.concat([ref, test]), how))
        out.append(non_inferior(f"accuracy of {arm} at sync FedAvg's virtual time non-inferior to sync's",
                                ref, test, strata=("model",)))
    if times is not None and left is not None and goal is not None:
        out += goal_claims(df, times, left)
    return out


def goal_claims(df: pd.DataFrame, times: pd.DataFrame, left: float) -> list[dict]:
    """FedBuff's goal, one row per FedBuff arm (`race.goal`: time to the fixed target ≤ 0.5 ×
    sync's and accuracy at sync's time non-inferior), said either way. Δ accuracy per seed is the
    arm's accuracy at sync's virtual time (`df`'s `accuracy`) minus sync's in the same seed."""
    ref = df[df["arm"] == SYNC_ARM][["seed", "accuracy"]].rename(columns={"accuracy": "ref_accuracy"})
    acc = df[["arm", "seed", "accuracy"]].merge(ref, on="seed", how="left")
    acc = acc.assign(acc_diff=acc["accuracy"] - acc["ref_accuracy"])[["arm", "seed", "acc_diff"]]
    paired = times.merge(acc, on=["arm", "seed"], how="inner")
    return [race.goal(arm, paired, left, df[df["arm"].isin([SYNC_ARM, arm])])
            for arm in dict.fromkeys(df["arm"]) if str(arm).startswith("FedBuff")]


CHECKS = {"clients": clients_claims, "heterogeneity": heterogeneity_claims, "dropout": dropout_claims,
          "privacy": privacy_claims, "comm": comm_claims.comm_claims, "system": sync_claims.sync_claims,
          "async": async_claims}


def _check(key: str, tables: dict[str, pd.DataFrame]) -> list[dict]:
    if key == "async":
        return async_claims(tables["async"], tables.get("async_curves"))
    return CHECKS[key](tables[key])


def table(tables: dict[str, pd.DataFrame], profile: str = "",
          extra: list[dict] | None = None) -> pd.DataFrame:
    """The claims table from the notebooks' per-run tables (`load`); one row per claim. `extra`:
    rows made elsewhere with `verdict.row` (e.g. projected rows, `basis=projected(...)`): a
    projected row may not repeat a measured row's claim text (it never stands in for one)."""
    rows = []
    for key in CHECKS:
        if key in tables and len(tables[key]):
            rows += _check(key, tables)
        else:
            note = f"{SOURCES[key]} missing: notebook not run"
            rows.append(row(f"{key} claims", "", None, "", "", OPEN, note))
    rows += extra or []
    measured = {r["claim"] for r in rows if r.get("basis", MEASURED) == MEASURED}
    for r in rows:
        if r.get("basis", MEASURED) != MEASURED and r["claim"] in measured:
            raise ValueError(f"claims: projected row {r['claim']!r} repeats a measured row's claim; "
                             "say in its claim text that it is a projection")
    return pd.DataFrame(family.adjust(rows), columns=COLUMNS).assign(profile=profile)


def rederive(out: str | Path, profile: str | None = None) -> pd.DataFrame:
    """`out`/claims.csv recomputed from the per-run CSVs the notebooks left in `out`, nothing
    rerun (what 99_summary writes; after a change to these rules, the committed record's claims
    are remade so, then `python -m fedlib record` rebuilds README's block and the page)."""
    out = Path(out)
    verdicts = table(load(out), out.name if profile is None else profile)
    verdicts.to_csv(out / "claims.csv", index=False)
    return verdicts


def show(claims_table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader wants it: the effect and its CI in one column, then what produced it."""
    def fmt(r: pd.Series) -> str:
        if r["n"] == 0 or pd.isna(r["effect"]):
            return "—"
        ci = "no CI" if pd.isna(r["ci_low"]) else f"[{r['ci_low']:+.3g}, {r['ci_high']:+.3g}]"
        return f"{r['effect']:+.3g} {ci}"
    cols = ("budget", "note", "measure", "tolerance", "holm", "basis", "shares_reference", *PRODUCED)
    out = claims_table.assign(**{"effect (95% CI)": claims_table.apply(fmt, axis=1)})
    out = out.astype({c: object for c in cols if c in out}).fillna({c: "" for c in cols})
    return out[["claim", "measure", "effect (95% CI)", "n", "tolerance", "verdict", "holm", "basis",
                "shares_reference", "note", "budget", "profile", *PRODUCED]]
