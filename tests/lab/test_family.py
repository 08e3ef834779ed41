"""fedlib.lab.family: Holm-adjusted verdicts over the accuracy claims and the rows that share a
reference, by hand and on the committed quick record of 24b75a7 (tests/lab/fixtures/quick-24b75a7)."""

import math
from pathlib import Path

import pandas as pd
import pytest

from fedlib.lab import claims, family, verdict

QUICK = Path(__file__).resolve().parent / "fixtures" / "quick-24b75a7"


def test_holm_adjusted_p_values_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 4*0.01 = 0.04, 3*0.02 = 0.06, 2*0.03 = 0.06, 1*0.04 = 0.04
    # -> running max 0.04, 0.06, 0.06, 0.06; a NaN is no test and does not count in m
    adj = family.holm_adjusted([0.03, 0.01, float("nan"), 0.04, 0.02])
    assert adj[:2] == pytest.approx([0.06, 0.04]) and math.isnan(adj[2])
    assert adj[3:] == pytest.approx([0.06, 0.06])
    assert family.holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def _row(name, effect, p_holds, p_fails, v, ref=None, basis=verdict.MEASURED):
    r = verdict.row(name, "", None, verdict.TOLERANCES["accuracy"].text, "", v, basis=basis)
    return {**r, "effect": effect, "p_holds": p_holds, "p_fails": p_fails,
            **({family.REF_KEY: ref} if ref else {})}


def test_holm_keeps_a_holds_only_where_the_step_down_still_rejects():
    rows = [_row("a", 0.0, 0.001, 0.999, verdict.HOLDS, ref=("r",)),     # 3 * 0.001 = 0.003: kept
            _row("b", 0.0, 0.02, 0.98, verdict.HOLDS, ref=("r",)),       # 2 * 0.02 = 0.04 > 0.025: dropped
            _row("c", -0.05, 0.99, 0.01, verdict.FAILS),                 # inferiority family: 3 * 0.01 = 0.03
            _row("d", -0.05, 0.99, 0.01, verdict.FAILS, basis=verdict.projected("fit", {"a": 1.0}))]
    out = family.adjust(rows)
    assert [r["holm"] for r in out] == [verdict.HOLDS, verdict.OPEN, verdict.OPEN, ""]
    assert out[1]["p_holm"] == pytest.approx(0.04) and out[2]["p_holm"] == pytest.approx(0.03)
    assert out[0]["shares_reference"] == out[1]["shares_reference"] == "ref 1: 2 rows"
    assert out[2]["shares_reference"] == "" and family.REF_KEY not in out[0]


def test_committed_holm_keeps_the_five_5_seed_holds_of_ten():
    """Review of 24b75a7: 10 accuracy rows "hold"; Holm over the 14 rows (one-sided 0.025) keeps 5,
    every 3-seed "holds" drops (the 6th smallest p, 0.00333 for client DP at ε=8, is above
    0.025 / 9 = 0.00278). 03's three rows and 04's two share the same IID runs (bit-identical)."""
    t = claims.table(claims.load(QUICK), "quick")
    acc = t[t["tolerance"] == verdict.TOLERANCES["accuracy"].text]
    assert len(acc) == 14 and (acc["verdict"] == verdict.HOLDS).sum() == 10
    kept = acc[acc["holm"] == verdict.HOLDS]
    assert len(kept) == 5 and set(kept["seeds_x_strata"]) == {"5 × 1"}
    assert set(acc.loc[acc["verdict"] == verdict.HOLDS, "seeds_x_strata"]) == {"5 × 1", "3 × 1"}
    assert sorted(acc["p_holds"])[5] == pytest.approx(0.003334, abs=1e-6)
    iid = acc[acc["claim"].str.contains("Dirichlet|dropout")]
    assert len(iid) == 5 and iid["shares_reference"].nunique() == 1
    assert iid["shares_reference"].iloc[0].endswith(": 5 rows")
    assert acc.loc[acc["claim"].str.contains("96 vs 2 clients"), "shares_reference"].iloc[0] == ""
    assert t.loc[~t.index.isin(acc.index), "holm"].fillna("").eq("").all()  # time and comm: no Holm verdict


def test_the_committed_claims_csv_had_the_same_p_values():
    """The p-values claims.table computes re-derive from the committed claims.csv's CI and n alone
    (one stratum, paired: se = half-width / t(.975, n-1) on n-1 dof)."""
    from scipy.stats import t as student

    old = pd.read_csv(QUICK / "claims.csv")
    old = old[old["tolerance"] == verdict.TOLERANCES["accuracy"].text]
    dof = old["n"] - 1
    se = (old["ci_high"] - old["ci_low"]) / 2 / student.ppf(0.975, dof)
    p = student.sf((old["effect"] + 0.03) / se, dof)
    new = claims.table(claims.load(QUICK), "quick")
    new = new[new["tolerance"] == verdict.TOLERANCES["accuracy"].text]
    assert sorted(p) == pytest.approx(sorted(new["p_holds"]), rel=1e-6)
