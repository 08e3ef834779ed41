"""fedlib.lab.power: seeds chosen before a run from a pilot's sd, and the minimum detectable
effect of a given number of seeds, against values computed by hand (t and χ² tables)."""

import math

import pytest

from fedlib.lab import power


def test_sd_upper_bound_on_2_dof_has_a_closed_form():
    # chi2 with 2 dof: P(X <= q) = 1 - exp(-q/2), so the 0.2 quantile is -2 ln 0.8 = 0.446287
    assert power.sd_upper(0.01, 2) == pytest.approx(0.01 * math.sqrt(2 / (-2 * math.log(0.8))))  # 0.0211694
    assert power.sd_upper(0.01, 2, confidence=0) == 0.01
    assert power.sd_upper(0.01, 40) < power.sd_upper(0.01, 4) < power.sd_upper(0.01, 2)  # more dof, tighter
    with pytest.raises(ValueError, match="dof > 0"):
        power.sd_upper(0.01, 0)


def test_mde_by_hand():
    # 10 seeds, sd 0.01 taken as known: (t(.975, 9) + t(.8, 9)) * 0.01 / sqrt(10)
    # = (2.262157 + 0.883404) * 0.01 / 3.162278 = 0.0099471
    assert power.mde(10, 0.01, 2, confidence=0) == pytest.approx(0.0099471, abs=1e-6)
    # planning on the 80 % upper bound of a 2-dof pilot sd: x 2.116936
    assert power.mde(10, 0.01, 2) == pytest.approx(0.0099471 * 2.116936, abs=1e-6)
    # two strata of 5 seeds: sd / sqrt(10) on 8 dof: (2.306004 + 0.888890) * 0.01 / 3.162278
    assert power.mde(5, 0.01, 2, strata=2, confidence=0) == pytest.approx(0.0101031, abs=1e-6)
    with pytest.raises(ValueError, match="one seed"):
        power.mde(1, 0.01, 2)


def test_seeds_for_is_the_smallest_n_whose_mde_reaches_the_distance():
    assert power.seeds_for(0.01, 0.01, 2, confidence=0) == 10  # mde(9) = 0.01069 > 0.01 >= mde(10)
    assert power.mde(9, 0.01, 2, confidence=0) > 0.01
    n = power.seeds_for(0.01, 0.01, 2)  # on the pilot's upper bound: many more
    assert n == 38 and power.mde(n, 0.01, 2) <= 0.01 < power.mde(n - 1, 0.01, 2)
    assert power.seeds_for(-0.01, 0.01, 2) == n and power.seeds_for(0.0, 0.01, 2) is None
    assert power.seeds_for(1e-6, 0.01, 2, most=50) is None


def test_mde_text_names_the_sd_it_planned_on():
    text = power.mde_text(3, 0.009, 2)
    assert text.startswith("MDE at 3 seeds: 0.059 from the margin") and "upper bound 0.0191" in text
    assert power.mde_text(1, 0.009, 0).startswith("no MDE")
