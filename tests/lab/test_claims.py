"""fedlib.lab.claims on synthetic tables with verdicts and intervals computed by hand: symmetric
non-inferiority on the CI of the (paired) difference, stratified pooling, the power note, the
columns that say what produced a row; the communication claims (`comm_claims`) as equivalence
tests."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlib.lab import claims, stats

ROOT = Path(__file__).resolve().parents[2]


def _runs(groups, **const):
    """One row per (settings, accuracy) value, seeds 0..k-1 within each group."""
    rows = []
    for settings, accs in groups:
        rows += [{**const, **settings, "seed": i, "accuracy": a} for i, a in enumerate(accs)]
    return pd.DataFrame(rows)


BASE = {"majority_rate": 0.57, "rounds": 5, "trainable": "full", "model": "minilm"}
T2 = 4.302653  # t(0.975, 2)


def _drop(ref, test, **const):
    df = _runs([({"participation.dropout": 0.0}, ref), ({"participation.dropout": 0.2}, test)],
               clients=8, **BASE, **const)
    return claims.dropout_claims(df)[0]  # p=0.2 (p=0.5: not run)


def test_dropout_holds_and_fails_on_the_paired_difference():
    df = _runs([({"participation.dropout": 0.0}, [0.80, 0.81, 0.82]),
                ({"participation.dropout": 0.2}, [0.80, 0.805, 0.81]),   # drop 0.005
                ({"participation.dropout": 0.5}, [0.60, 0.61, 0.62])],   # drop 0.2, every seed
               clients=8, **BASE)
    t = claims.table({"dropout": df}).set_index("claim")
    assert t.loc["accuracy non-inferior under dropout p=0.2 vs none — whole model", "verdict"] == claims.HOLDS
    row = t.loc["accuracy non-inferior under dropout p=0.5 vs none — whole model"]
    assert row["verdict"] == claims.FAILS and row["tolerance"] == "Δ accuracy ≥ −0.03"
    # paired: the three differences are all -0.2 (sd 0): a zero-width interval at -0.2
    assert row["effect"] == pytest.approx(-0.2) and row["ci_high"] == pytest.approx(-0.2)
    assert "paired over seeds" in row["measure"] and row["n"] == 3
    assert row["budget"] == "8 clients, 5 rounds, full, 3 seeds" and row["seeds_x_strata"] == "3 × 1"


def test_a_wide_ci_entirely_beyond_the_margin_does_not_hold():
    """Drop 0.11, CI [-0.185, -0.036]: all below -0.03, so it does not hold (the intervals of
    the two arms overlap, which said "not resolved" before)."""
    row = _drop([0.80, 0.85, 0.90], [0.72, 0.74, 0.76])  # differences -0.08, -0.11, -0.14 (sd 0.03)
    half = T2 * 0.03 / math.sqrt(3)
    assert row["effect"] == pytest.approx(-0.11) and row["ci_high"] == pytest.approx(-0.11 + half)
    assert row["verdict"] == claims.FAILS and "sd of one seed's difference 0.03" in row["note"]


def test_a_ci_across_the_margin_is_not_resolved_and_states_the_mde_not_a_post_hoc_seed_count():
    """Drop 0.032 whose arms' intervals separate: the CI of the difference [-0.054, -0.010]
    straddles -0.03, so it is not resolved (it "did not hold" before). The note states the
    design's minimum detectable effect, not a seed count worked back from the observed -0.032."""
    row = _drop([0.705, 0.706, 0.707], [0.664, 0.674, 0.684])  # differences -0.041, -0.032, -0.023
    half = T2 * 0.009 / math.sqrt(3)
    assert row["effect"] == pytest.approx(-0.032) and row["ci_low"] == pytest.approx(-0.032 - half)
    assert row["verdict"] == claims.OPEN
    # sd 0.009 on 2 dof; chi2(0.2, 2) = -2 ln 0.8 = 0.446287, 80 % upper bound 0.009 * sqrt(2 / 0.446287)
    # = 0.0190523; MDE at 3 seeds = (t(.975, 2) + t(.8, 2)) * 0.0190523 / sqrt(3) = 5.363313 * 0.0110 = 0.0590
    assert "MDE at 3 seeds: 0.059 from the margin" in row["note"] and "upper bound 0.0191" in row["note"]
    assert "seeds per stratum would resolve" not in row["note"] and "test set fixed" in row["measure"]


def test_arms_without_shared_seeds_fall_back_to_welch():
    df = _runs([({"participation.dropout": 0.0}, [1.0, 2.0, 3.0])], clients=8, **BASE)
    test = _runs([({"participation.dropout": 0.2}, [4.0, 5.0, 6.0])], clients=8, **BASE)
    test = test.assign(seed=[7, 8, 9])
    row = claims.dropout_claims(pd.concat([df, test]).assign(majority_rate=0.0))[0]
    assert "Welch" in row["measure"] and row["effect"] == 3.0
    assert row["ci_high"] - row["effect"] == pytest.approx(2.776445 * math.sqrt(2 / 3), abs=1e-5)


def test_strata_are_combined_not_pooled_as_seeds():
    """Two algorithms × 3 seeds: per-stratum paired differences (-0.01, -0.02, -0.03) and
    (0, 0.02, 0.01): effect -0.005, pooled s 0.01 on 4 dof, half = t(0.975, 4) · 0.01·√(2/3)/2."""
    df = pd.concat([
        _runs([({"participation.dropout": 0.0}, [0.80, 0.81, 0.82]),
               ({"participation.dropout": 0.2}, [0.79] * 3)], algorithm="fedavg", clients=8, **BASE),
        _runs([({"participation.dropout": 0.0}, [0.70] * 3),
               ({"participation.dropout": 0.2}, [0.70, 0.72, 0.71])],
              algorithm="fedprox", clients=8, **BASE)])
    row = claims.dropout_claims(df)[0]
    assert row["n"] == 6 and row["seeds_x_strata"] == "3 × 2" and "mean of 2 strata" in row["measure"]
    assert row["effect"] == pytest.approx(-0.005)
    assert row["ci_high"] - row["effect"] == pytest.approx(2.776445 * 0.01 * math.sqrt(2 / 3) / 2, abs=1e-6)


def test_one_seed_or_a_reference_that_does_not_learn_is_not_resolved():
    one = _runs([({"participation.dropout": 0.0}, [0.8]), ({"participation.dropout": 0.5}, [0.5])],
                clients=8, **BASE)
    assert {r["verdict"] for r in claims.dropout_claims(one)} == {claims.OPEN}
    stuck = _runs([({"clients": 2}, [0.57, 0.57, 0.57]), ({"clients": 16}, [0.57, 0.57, 0.57])], **BASE)
    (row,) = claims.clients_claims(stuck)
    assert row["verdict"] == claims.OPEN and "does not learn" in row["note"]
    assert row["claim"] == "accuracy non-inferior at 16 vs 2 clients (minilm) — whole model"


def test_privacy_rows_name_epsilon_delta_and_what_produced_them():
    head = {**BASE, "trainable": "head", "params": 2695, "cached_features": True, "data": "mag",
            "eval_examples": 200, "eval_split_size": 5000, "prov_git_commit": "0123456789abcdef",
            "prov_git_dirty": False}
    df = pd.concat([
        _runs([({}, [0.80, 0.81, 0.82])], **head, clients=8),
        _runs([({"privacy.mode": "client", "privacy.target_epsilon": 8.0, "delta": 1e-5},
                [0.80, 0.81, 0.815])], **head, clients=8),
        _runs([({}, [0.60, 0.60, 0.61])], **BASE, clients=8),  # another trainable part: not the reference
    ])
    t = claims.table({"privacy": df}, profile="quick").set_index("claim")
    probe = "linear probe on frozen features (2,695 params)"  # MiniLM: 384 wide, 2695 = 7 x (384 + 1)
    row = t.loc[f"accuracy non-inferior under client-level DP-FedAvg (ε=8, δ=1e-05) vs non-private — {probe}"]
    assert row["verdict"] == claims.HOLDS and row["basis"] == "measured"
    assert (row["profile"], row["model"], row["data"], row["trainable"], row["cached_features"]) == (
        "quick", "minilm", "mag", probe, "True")
    assert (row["clients"], row["rounds"], row["eval_examples"], row["delta"], row["git_commit"]) == (
        "8", "5", "200 of 5000", "1e-05", "0123456789")
    assert "not run" in t.loc["accuracy non-inferior under DP-SGD (ε=2, δ=?) vs non-private", "note"]
    numbers = {"effect", "ci_low", "ci_high", "p_holds", "p_fails", "p_holm"}
    assert set(claims.COLUMNS) <= set(claims.show(t.reset_index()).columns) | numbers


def test_missing_notebooks_leave_their_claims_unresolved():
    t = claims.table({})
    assert len(t) == len(claims.CHECKS) and set(t["verdict"]) == {claims.OPEN}


def test_budget_lists_client_counts_in_numeric_order():
    df = _runs([({"clients": c}, [0.8]) for c in (12, 2, 6)], **BASE)
    assert claims.budget(df) == "2/6/12 clients, 5 rounds, full, 1 seed"


def test_no_overlap_or_separation_rule_in_code_or_prose():
    texts = {p: p.read_text() for p in [ROOT / "fedlib/lab/claims.py", ROOT / "fedlib/lab/stats.py",
                                        ROOT / "fedlib/lab/comm_claims.py", ROOT / "README.md"]}
    for nb in ("02_accuracy_vs_clients", "03_heterogeneity", "05_privacy"):
        import nbformat
        cells = nbformat.read(ROOT / "notebooks" / f"{nb}.ipynb", as_version=4).cells
        texts[nb] = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    for name, text in texts.items():
        hits = re.findall(r"[^\n]*intervals? (?:overlap|separat)[^\n]*|[^\n]*stats\.differs[^\n]*", text)
        assert not hits, f"{name}: {hits}"


# communication and synchronization claims: tests/test_lab_comm.py


def test_tolerance_table_gives_every_margin_a_reason():
    t = claims.TOLERANCES
    assert {"accuracy", "flat", "curvature", "size", "sync"} <= set(t)
    assert all(len(v.reason) > 40 for v in t.values())
    assert (t["size"].lo, t["size"].hi) == (0.8, 1.25) and np.isclose(1 / 0.8, 1.25)


def test_readme_states_every_tolerance_with_its_reason():
    readme = (ROOT / "README.md").read_text()
    for t in claims.TOLERANCES.values():
        assert t.text in readme and t.reason in readme


def test_privacy_claims_split_by_trainable_part_never_pooled():
    """Head and full fine-tuning at the same ε are two claims, each against its own reference."""
    dp = {"privacy.mode": "client", "privacy.target_epsilon": 8.0, "delta": 1e-5}
    df = pd.concat([
        _runs([({}, [0.80, 0.81, 0.82])], **{**BASE, "trainable": "head"}, clients=8),
        _runs([(dp, [0.80, 0.81, 0.815])], **{**BASE, "trainable": "head"}, clients=8),
        _runs([({}, [0.90, 0.91, 0.92])], **BASE, clients=8),
        _runs([(dp, [0.70, 0.71, 0.72])], **BASE, clients=8),
    ])
    t = claims.table({"privacy": df}).set_index("claim")
    claim = "accuracy non-inferior under client-level DP-FedAvg (ε=8, δ=1e-05) vs non-private — "
    head = t.loc[claim + "classifier head on a frozen encoder"]  # no params column: not known to be linear
    full = t.loc[claim + "whole model"]
    assert head["verdict"] == claims.HOLDS and head["effect"] == pytest.approx(-0.005 / 3)
    assert full["verdict"] == claims.FAILS and full["effect"] == pytest.approx(-0.2) and full["n"] == 3




def test_a_projected_row_carries_its_basis_and_never_stands_in_for_a_measured_one():
    from fedlib.lab import verdict

    basis = verdict.projected("Hockney α–β fit of 01", {"alpha_s": 2e-06, "beta_Bps": 2.5e10, "ranks": 96})
    assert basis == "projected (Hockney α–β fit of 01, alpha_s=2e-06, beta_Bps=2.5e+10, ranks=96)"
    proj = verdict.row("p2p comm at 96 clients, projected", "s per round", stats.Interval(1.0, 0.1, 3),
                       "", "", claims.HOLDS, basis=basis)
    t = claims.table({}, extra=[proj]).set_index("claim")
    assert t.loc["p2p comm at 96 clients, projected", "basis"] == basis
    assert set(t.drop(index="p2p comm at 96 clients, projected")["basis"]) == {claims.MEASURED}
    clash = {**proj, "claim": "dropout claims"}  # the text of a measured row (here: the missing-notebook row)
    with pytest.raises(ValueError, match="repeats a measured row's claim"):
        claims.table({}, extra=[clash])
    with pytest.raises(ValueError, match="neither 'measured' nor"):
        verdict.row("x", "", None, "", "", claims.OPEN, basis="guessed")


def test_rederive_rewrites_claims_csv_from_the_per_run_csvs_alone(tmp_path):
    """The committed record of 24b75a7 (its per-run CSVs only) remade under today's rules."""
    import shutil

    src = ROOT / "tests" / "lab" / "fixtures" / "quick-24b75a7"
    for f in src.glob("0*.csv"):
        shutil.copy(f, tmp_path / f.name)
    t = claims.rederive(tmp_path, "quick")
    again = pd.read_csv(tmp_path / "claims.csv")
    # 10 accuracy rows of 02-05, 8 rows of 08, and one "notebook not run" row each for 01 and 06
    assert list(again.columns) == claims.COLUMNS and len(again) == len(t) == 20
    assert again["note"].str.contains("notebook not run").sum() == 2
    assert set(again["basis"]) == {claims.MEASURED} and (again["profile"] == "quick").all()
