"""fedlib.lab.stats against intervals computed by hand (t quantiles from tables)."""

import math

import pandas as pd
import pytest

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
    assert not stats.differs(iv, stats.interval([0.1, 0.1, 0.1]))


def test_differs_only_when_intervals_separate():
    a = stats.interval([1.0, 2.0, 3.0])        # [-0.48, 4.48]
    assert stats.differs(a, stats.interval([10.0, 11.0, 12.0]))
    assert not stats.differs(a, stats.interval([2.0, 3.0, 4.0]))
    # means 2 vs 5 "look" different, but [-0.48, 4.48] and [2.52, 7.48] overlap
    assert not stats.differs(a, stats.interval([4.0, 5.0, 6.0]))


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
