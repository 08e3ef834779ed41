"""The "reaches the target sooner" rows (fedlib.lab.time_claims through claims.async_claims): a
paired t-interval on log time ratios, every seed over the same denominator, and no verdict when
sync had nothing left to learn. Hand-computed on made-up seeds, and known answers from the
committed quick record of 24b75a7 (tests/lab/fixtures/quick-24b75a7)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlib.lab import claims, time_claims, virtual_time

QUICK = Path(__file__).resolve().parent / "fixtures" / "quick-24b75a7"
RUN = {"model": "minilm", "trainable": "head", "params": 2695, "clients": 32, "rounds": 10,
       "majority_rate": 0.15}
# sync reaches its final accuracy 0.8 at 300 and ends at 400; at half its budget (200) it has 0.6
SYNC = [(100.0, 0.5), (200.0, 0.6), (300.0, 0.8), (400.0, 0.8)]


def _curve(arm, seed, points):
    return pd.DataFrame([{"arm": arm, "seed": seed, "virtual_s": t, "accuracy": a, "updates": 8 * (i + 1)}
                         for i, (t, a) in enumerate(points)])


def _rows(arm, hits=None, ends=None, sync=SYNC):
    """Three seeds: sync as SYNC; `arm` reaching 0.8 at hits[s] (None: never, its run ending at ends[s])."""
    curves, runs = [], []
    for s in range(3):
        curves.append(_curve("sync FedAvg", s, sync))
        hit = hits[s] if hits else None
        pts = [(hit / 2, 0.7), (hit, 0.8)] if hit is not None else [(ends[s] / 2, 0.7), (ends[s], 0.75)]
        curves.append(_curve(arm, s, pts))
        runs += [{**RUN, "arm": "sync FedAvg", "seed": s, "accuracy": 0.8},
                 {**RUN, "arm": arm, "seed": s, "accuracy": 0.79 + 0.001 * s}]
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


PROBE = "linear probe on frozen features (2,695 params)"


def _time_row(arm, **kw):
    runs, curves = _rows(arm, **kw)
    rows = claims.async_claims(runs, curves)
    return next(r for r in rows if "less virtual time" in r["claim"])


def test_three_made_up_seeds_log_ratio_interval_by_hand():
    """Ratios 0.5, 0.6, 0.75 (150, 180, 225 over sync's 300): logs -0.693147, -0.510826, -0.287682,
    mean -0.497218, sd 0.203075, half t(.975, 2) 4.302653 * 0.203075 / sqrt 3 = 0.504466; exp gives
    0.6082 [0.3673, 1.0073]: straddles 1, not resolved. The raw-scale interval [0.304, 0.929] called
    it "holds" before."""
    row = _time_row("FedBuff K=2", hits=[150.0, 180.0, 225.0])
    assert row["claim"] == f"FedBuff K=2 reaches sync FedAvg's final accuracy in less virtual time — {PROBE}"
    assert (row["effect"], row["ci_low"], row["ci_high"]) == pytest.approx((0.60822, 0.36726, 1.00727),
                                                                           abs=1e-5)
    assert row["verdict"] == claims.OPEN and "CI straddles 1" in row["note"] and row["n"] == 3
    assert "sync gains 0.2 after half its budget" in row["note"]
    fast = _time_row("FedBuff K=2", hits=[150.0, 160.0, 170.0])
    assert fast["verdict"] == claims.HOLDS and fast["ci_high"] < 1


def test_a_seed_that_never_reaches_the_target_has_sync_s_time_to_the_target_as_denominator():
    """The arm never reaches 0.8; its runs end at 360, 420, 390. Over sync's time to the target
    (300), as the seeds that reach it are: 1.2, 1.4, 1.3, log CI [1.0713, 1.5713] -> does not hold.
    The old bound (its run over sync's whole run, 400: 0.9, 1.05, 0.975) straddled 1."""
    row = _time_row("FedBuff K=2", ends=[360.0, 420.0, 390.0])
    assert (row["effect"], row["ci_low"], row["ci_high"]) == pytest.approx((1.29743, 1.07130, 1.57129),
                                                                           abs=1e-5)
    assert row["verdict"] == claims.FAILS and "3 of 3 seeds never reached it" in row["note"]
    # a censored seed is a lower bound: with a CI below 1 the row still cannot hold
    mixed = _time_row("FedBuff K=2", hits=[60.0, 90.0, None], ends=[0, 0, 100.0])
    assert mixed["ci_high"] < 1 and mixed["verdict"] == claims.OPEN and "only a lower bound" in mixed["note"]


def test_no_learning_left_leaves_the_row_unresolved_and_keeps_the_time_rule_in_the_note():
    flat = [(100.0, 0.795), (200.0, 0.796), (300.0, 0.8), (400.0, 0.8)]  # gains 0.004 after half
    runs, curves = _rows("FedAsync", hits=[150.0, 160.0, 170.0], sync=flat)
    row = next(r for r in claims.async_claims(runs, curves) if "less virtual time" in r["claim"])
    assert row["verdict"] == claims.NO_LEARNING == "not resolved: no learning left to speed up"
    assert "sync gains 0.004" in row["note"] and "by the time rule alone: holds" in row["note"]


def test_a_target_fixed_in_advance_is_the_same_for_every_arm_and_seed():
    runs, curves = _rows("FedBuff K=4", hits=[150.0, 180.0, 225.0])
    times = virtual_time.paired_times(curves, "sync FedAvg", target=0.7)  # sync first at 0.8 (300)
    assert set(times["target"]) == {0.7} and times.loc[times["arm"] == "FedBuff K=4", "ratio"].tolist() == (
        pytest.approx([75 / 300, 90 / 300, 112.5 / 300]))
    rows = claims.async_claims(runs.assign(target=0.7), curves)
    row = next(r for r in rows if "virtual time" in r["claim"])
    assert row["claim"].startswith("FedBuff K=4 reaches the fixed target 0.7 in less virtual time")
    assert "target: 0.7, fixed in advance" in row["note"]
    with pytest.raises(ValueError, match="one target"):
        claims.async_claims(runs.assign(target=[0.7, 0.71] * 3), curves)


def _committed():
    tables = claims.load(QUICK)
    return virtual_time.paired_times(tables["async_curves"], "sync FedAvg"), tables


def test_committed_deadline_row_by_the_time_rule_is_not_resolved_on_the_log_scale():
    """Review of 24b75a7: deadline p80's ratios 0.2507, 0.6530, 0.1909 gave a raw CI [-0.26, 0.989]
    ("holds"); on the log scale it is [0.063, 1.57]: not resolved."""
    times, _ = _committed()
    iv, verdict, _why = time_claims.rule(times[times["arm"] == "sync FedAvg, deadline p80"])
    assert (iv.lo, iv.hi) == pytest.approx((0.06333, 1.56703), abs=1e-4) and verdict == claims.OPEN


def test_committed_fedbuff_k2_by_the_time_rule_does_not_hold():
    """FedBuff K=2 never reached sync's final accuracy in any seed: its runs (2561.9, 2825.8,
    3065.6) over sync's times to it (1990.4, 1762.1, 2029.4) are 1.287, 1.604, 1.511 — the review's
    [1.29, 1.60, 1.51] — log CI [1.10, 1.94] (the review's [1.06, 1.87] is the raw-scale interval
    of the same bounds): does not hold (the record said "not resolved")."""
    times, _ = _committed()
    k2 = times[times["arm"] == "FedBuff K=2"]
    assert set(k2["kind"]) == {"arm never reached"}
    assert k2["ratio"].tolist() == pytest.approx([1.28715, 1.60363, 1.51060], abs=1e-5)
    iv, verdict, _why = time_claims.rule(k2)
    assert (iv.lo, iv.hi) == pytest.approx((1.10153, 1.93758), abs=1e-4) and verdict == claims.FAILS
    raw = np.mean(k2["ratio"]), 4.302653 * np.std(k2["ratio"], ddof=1) / np.sqrt(3)
    assert (raw[0] - raw[1], raw[0] + raw[1]) == pytest.approx((1.063, 1.871), abs=1e-3)


def test_committed_time_rows_have_no_learning_left():
    """Sync gained 0.009, 0.0105, 0.003 after half its budget (mean 0.0075 < 0.01): the head had
    plateaued, so every committed "faster" row is not resolved, whatever its interval."""
    times, tables = _committed()
    sync = tables["async_curves"].query("arm == 'sync FedAvg'")
    assert virtual_time.learning_left(sync) == pytest.approx(0.0075)
    t = claims.table(tables, "quick")
    rows = t[t["claim"].str.contains("in less virtual time")]
    assert len(rows) == 4 and set(rows["verdict"]) == {claims.NO_LEARNING}
    assert rows["claim"].str.endswith(PROBE).all()


def test_fedbuffs_goal_is_a_claims_row_by_hand():
    """Target 0.7 fixed in advance; sync first reaches it at 300 (0.8). FedBuff reaches 0.7 at 75,
    90, 112.5: ratios 0.25, 0.3, 0.375, logs mean −1.190365 (exp: 0.30411), sd 0.203074, half-width 4.302653 ·
    0.203074 / √3 = 0.504466 → [0.18363, 0.50364]: its upper end is above the goal's 0.5, so the
    time half is not resolved (it is "faster" than sync: upper end < 1). Δ accuracy −0.010, −0.009,
    −0.008 ≥ −0.03. At 60, 75, 90 (ratios 0.2, 0.25, 0.3, upper end 0.4084) the goal holds. A
    non-FedBuff arm has no goal row; the goal is not in the accuracy family (no Holm)."""
    def goal(arm, hits):
        runs, curves = _rows(arm, hits=hits)
        return [r for r in claims.async_claims(runs.assign(target=0.7), curves) if "≤ 0.5×" in r["claim"]]
    (row,) = goal("FedBuff K=4", [150.0, 180.0, 225.0])
    assert row["claim"] == ("FedBuff K=4 reaches the target in ≤ 0.5× sync FedAvg's virtual time, "
                            f"accuracy non-inferior — {PROBE}")
    assert (row["effect"], row["ci_low"], row["ci_high"]) == pytest.approx((0.30411, 0.18363, 0.50364),
                                                                           abs=1e-5)
    assert row["verdict"] == claims.OPEN and "Δ accuracy -0.009" in row["note"]
    assert row["tolerance"] == claims.TOLERANCES["goal"].text
    (fast,) = goal("FedBuff K=4", [120.0, 150.0, 180.0])
    assert fast["verdict"] == claims.HOLDS and fast["ci_high"] == pytest.approx(0.4084, abs=2e-4)
    assert goal("FedAsync", [120.0, 150.0, 180.0]) == []
    runs, curves = _rows("FedBuff K=4", hits=[120.0, 150.0, 180.0])
    t = claims.table({"async": runs.assign(target=0.7), "async_curves": curves})
    assert t.loc[t["claim"].str.contains("≤ 0.5×"), "holm"].tolist() == [""]
