"""fedlib.lab.stats against intervals computed by hand (t quantiles from tables or scipy)."""

import math

import pandas as pd
import pytest
from scipy.stats import t as student

from fedlib.lab import stats


def test_interval_of_one_two_three():
    # mean 2, sd 1, half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 * 0.577350 = 2.484138
    iv = stats.interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.half == pytest.approx(2.484138, abs=1e-5)
    assert (iv.lo, iv.hi) == pytest.approx((-0.484138, 4.484138), abs=1e-5)


def test_one_value_has_no_interval_and_nans_are_dropped():
    iv = stats.interval([0.7, float("nan"), None])
    assert iv.n == 1 and iv.mean == 0.7 and math.isnan(iv.half) and not iv.resolved


def test_welch_difference():
    # d = 3, var/n = 1/3 each, se = sqrt(2/3) = 0.816497, Welch dof = 4, t(0.975, 4) = 2.776445
    d = stats.difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert d.mean == 3.0 and d.n == 3
    assert d.half == pytest.approx(2.776445 * 0.816497, abs=1e-5)


def test_summarize_groups():
    df = pd.DataFrame({"k": ["a", "a", "a", "b"], "acc": [1.0, 2.0, 3.0, 5.0]})
    t = stats.summarize(df, "k", "acc").set_index("k")
    assert t.loc["a", "acc"] == 2.0 and t.loc["a", "n"] == 3
    assert t.loc["a", "acc_ci"] == pytest.approx(2.484138, abs=1e-5)
    assert t.loc["b", "n"] == 1 and math.isnan(t.loc["b", "acc_ci"])


def test_slope_interval():
    # x 0..3, y 0,1,2,4: b = Sxy/Sxx = 6.5/5 = 1.3, a = -0.2, SSR = 0.30, SST = 8.75,
    # se(b) = sqrt(0.30 / 2 / 5) = 0.173205, half = t(0.975, 2) * se = 0.745242
    s = stats.slope([0, 1, 2, 3], [0, 1, 2, 4])
    assert s.slope.mean == pytest.approx(1.3) and s.intercept == pytest.approx(-0.2)
    assert s.r2 == pytest.approx(1 - 0.3 / 8.75)
    assert s.slope.half == pytest.approx(0.745242, abs=1e-5)


def test_no_rule_compares_two_intervals_for_overlap():
    """Overlapping CIs do not mean no difference: the rule that called one is gone."""
    assert not hasattr(stats, "differs")


def test_stratified_paired_pools_the_variance_of_the_per_seed_differences():
    # stratum 1: differences -0.01, -0.02, -0.03 (mean -0.02, var 1e-4); stratum 2: 0, 0.02, 0.01
    # (mean 0.01, var 1e-4). Effect = mean of the two = -0.005; pooled s = 0.01 on 2+2 = 4 dof;
    # se = 0.01 * sqrt(1/3 + 1/3) / 2 = 0.0040825; half = t(0.975, 4) = 2.776445 * se = 0.011335
    e = stats.stratified([([0.80, 0.81, 0.82], [0.79, 0.79, 0.79]),
                          ([0.70, 0.70, 0.70], [0.70, 0.72, 0.71])], paired=True)
    assert e.method == "paired" and e.strata == 2 and e.iv.n == 6
    assert e.iv.mean == pytest.approx(-0.005) and e.unit_sd == pytest.approx(0.01)
    assert e.iv.half == pytest.approx(0.011335, abs=1e-6)
    one = stats.stratified([([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])], paired=True)  # = the t-interval of 1, 2, 3
    assert (one.iv.mean, one.iv.half) == pytest.approx((2.0, 2.484138), abs=1e-6)


def test_stratified_welch_by_hand():
    # effects 3 and 1 -> 2; four groups of variance 1, n 3: se = sqrt(4/3) / 2 = 0.577350;
    # Welch-Satterthwaite dof = (4/3)^2 / (4 * (1/3)^2 / 2) = 8; t(0.975, 8) = 2.306004
    e = stats.stratified([([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])],
                         paired=False)
    assert e.method == "Welch" and e.iv.mean == 2.0 and e.iv.n == 6
    assert e.iv.half == pytest.approx(2.306004 * 0.577350, abs=1e-5)
    single = stats.stratified([([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])], paired=False)
    assert single.iv.half == pytest.approx(stats.difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).half)


def test_seeds_needed_is_the_smallest_n_with_80_percent_power():
    # gap 0.01 at sd 0.01, one stratum: (t(.975, n-1) + t(.8, n-1)) / sqrt(n) <= 1 first at n = 10
    need = [(student.ppf(0.975, n - 1) + student.ppf(0.8, n - 1)) / math.sqrt(n) for n in (9, 10)]
    assert need[0] > 1 >= need[1]
    assert stats.seeds_needed(0.01, 0.01) == 10 and stats.seeds_needed(-0.01, 0.01) == 10
    # two strata: se = sd / sqrt(2n) on 2(n-1) dof
    two = [(student.ppf(0.975, 2 * (n - 1)) + student.ppf(0.8, 2 * (n - 1))) / math.sqrt(2 * n)
           for n in (5, 6)]
    assert two[0] > 1 >= two[1] and stats.seeds_needed(0.01, 0.01, strata=2) == 6
    assert stats.seeds_needed(0.0, 0.01) is None


def test_quadratic_term_interval():
    # x 0,1,2 twice, y = x^2 -+ 0.1: the fit is the means (c = 1), SSR = 6 * 0.01 on 3 dof, s^2 = 0.02;
    # c = (y0 - 2 y1 + y2) / 2 per copy: var factor (0.25 + 1 + 0.25) / 2 copies = 0.75 -> se = sqrt(0.015)
    f = stats.polyfit([0, 1, 2, 0, 1, 2], [0.1, 0.9, 4.1, -0.1, 1.1, 3.9], 2)
    assert f.dof == 3 and f.coef[2].mean == pytest.approx(1.0)
    assert f.coef[1].mean == pytest.approx(0.0, abs=1e-9)
    assert f.coef[2].half == pytest.approx(3.182446 * math.sqrt(0.015), abs=1e-5)
    assert not stats.polyfit([1, 1, 2, 2], [1, 2, 3, 4], 2).coef[2].resolved  # two distinct x: no curve


def test_log_ratio_interval_is_the_t_interval_of_the_logs_exponentiated():
    # 24b75a7's deadline-p80 ratios: raw t-interval [-0.259, 0.989] reaches below 0; on the log
    # scale: logs -1.383, -0.426, -1.656, mean -1.155, half 4.302653 * 0.6452 / sqrt 3 = 1.6028
    r = stats.log_ratio([0.2507490640751018, 0.6529992653703182, 0.19092891851143381])
    assert (r.lo, r.mean, r.hi) == pytest.approx((0.063329, 0.315022, 1.567033), abs=1e-5)
    raw = stats.interval([0.2507490640751018, 0.6529992653703182, 0.19092891851143381])
    assert raw.lo < 0 < r.lo and r.n == 3 and r.resolved
    one = stats.log_ratio([2.0])
    assert one.mean == pytest.approx(2.0) and not one.resolved
    with pytest.raises(ValueError, match="finite and > 0"):
        stats.log_ratio([0.5, float("inf")])


def test_one_sided_p_values_agree_with_the_95_percent_interval():
    # paired differences -0.01, -0.02, -0.03: mean -0.02, se 0.01 / sqrt 3 on 2 dof
    e = stats.stratified([([0.0, 0.0, 0.0], [-0.01, -0.02, -0.03])], paired=True)
    assert e.dof == 2 and e.se == pytest.approx(0.01 / math.sqrt(3))
    t = (-0.02 + 0.03) / (0.01 / math.sqrt(3))  # 1.732051: p = P(T_2 > 1.732) = 0.112702
    assert stats.p_above(e, -0.03) == pytest.approx(student.sf(t, 2)) == pytest.approx(0.112702, abs=1e-6)
    assert stats.p_above(e, -0.03) + stats.p_below(e, -0.03) == pytest.approx(1.0)
    # at the interval's lower end the one-sided p is exactly 0.025
    assert stats.p_above(e, e.iv.lo) == pytest.approx(0.025)
