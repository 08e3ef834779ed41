"""fedlib.lab.ranges: an interval never leaves its quantity's range — positive quantities on the
log scale, bounded ones cut at their bounds, and no interval at all at n ≤ few (the runs instead).
Known answers computed by hand from the t quantiles t(0.975, 1) = 12.7062, t(0.975, 2) = 4.30265."""

import math

import pandas as pd
import pytest

from fedlib.lab import ranges, stats

T1, T2 = 12.706204736, 4.302652730


def test_two_times_get_no_t_interval_reaching_below_zero():
    """The bug of Figure 1a: the t-interval of 0.1 s and 0.9 s is 0.5 ± 5.08 s, down to −4.6 s."""
    assert stats.interval([0.1, 0.9]).lo == pytest.approx(0.5 - T1 * 0.4)  # se = sd/√2 = 0.4
    b = ranges.band([0.1, 0.9], "log")
    assert b.center == pytest.approx(0.3) and b.n == 2 and not b.drawn  # geometric mean; n ≤ 3: the runs


def test_log_interval_known_answer():
    """1, 4, 16: logs 0, ln 4, 2 ln 4 → mean ln 4, sd ln 4, se ln 4/√3; the interval is
    4·4^(±t/√3), always positive."""
    b = ranges.band([1.0, 4.0, 16.0], "log", few=0)
    k = T2 / math.sqrt(3)
    assert (b.center, b.lo, b.hi) == pytest.approx((4.0, 4 * 4 ** -k, 4 * 4**k))
    assert b.lo == pytest.approx(0.12778, abs=1e-5) and b.hi == pytest.approx(125.21, abs=0.01)


def test_log_scale_default_draws_no_interval_up_to_three_runs():
    assert not ranges.band([1.0, 4.0, 16.0], "log").drawn
    assert ranges.band([1.0, 4.0, 16.0, 2.0], "log").drawn


def test_bounded_interval_is_cut_at_the_bound():
    """0.5, 0.9, 1.0: mean 0.8, sd √0.07, half 4.30265·√0.07/√3 = 0.65724 → [0.14276, 1.45724],
    cut at 1."""
    b = ranges.band([0.5, 0.9, 1.0], bounds=(0.0, 1.0))
    assert (b.center, b.lo, b.hi) == pytest.approx((0.8, 0.8 - 0.657241, 1.0), abs=1e-5)


def test_linear_default_is_the_t_interval():
    b = ranges.band([1.0, 2.0, 3.0])
    assert (b.lo, b.hi) == pytest.approx((2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3)))
    assert not ranges.band([5.0]).drawn and ranges.band([5.0]).center == 5.0


def test_a_non_positive_value_on_the_log_scale_is_one_line_error():
    with pytest.raises(ValueError, match="log-scale interval of 0 ≤ 0: not a positive quantity"):
        ranges.band([0.0, 1.0], "log")


def test_summarize_one_row_per_group():
    df = pd.DataFrame({"g": ["a", "a", "a", "a", "b"], "t": [1.0, 4.0, 16.0, 4.0, 2.0]})
    t = ranges.summarize(df, "g", "t", "log")
    assert list(t.columns) == ["g", "t", "t_lo", "t_hi", "n"]
    assert t["n"].tolist() == [4, 1] and t["t"].tolist() == pytest.approx([4.0, 2.0])
    assert t["t_lo"].iloc[0] > 0 and math.isnan(t["t_lo"].iloc[1])
