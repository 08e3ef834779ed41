"""fedlib.lab.virtual_time's target and scoring rules on made-up curves: a target fixed in advance
from a pilot, the reference's learning left, paired times over one denominator, a common grid."""

import math

import numpy as np
import pandas as pd
import pytest

from fedlib.lab import virtual_time


def _curves(spec):
    return pd.concat([pd.DataFrame({"arm": arm, "seed": seed, "virtual_s": [t for t, _ in pts],
                                    "accuracy": [a for _, a in pts]}) for (arm, seed), pts in spec.items()],
                     ignore_index=True)


PILOT = _curves({("sync", 0): [(100, 0.40), (200, 0.55), (300, 0.60), (400, 0.62)],   # half 200: 0.55
                 ("sync", 1): [(150, 0.45), (300, 0.50), (450, 0.61), (600, 0.63)]})  # half 300: 0.50


def test_pilot_target_is_the_mean_accuracy_at_half_the_budget():
    assert virtual_time.pilot_target(PILOT) == pytest.approx((0.55 + 0.50) / 2)
    # gains after half: 0.62 - 0.55 = 0.07 and 0.63 - 0.50 = 0.13
    assert virtual_time.learning_left(PILOT) == pytest.approx(0.10)
    late = _curves({("sync", 0): [(300, 0.6), (400, 0.62)]})  # nothing evaluated by 200
    with pytest.raises(ValueError, match="half its budget"):
        virtual_time.pilot_target(late)


def test_paired_times_use_one_denominator_per_seed():
    c = pd.concat([PILOT, _curves({("async", 0): [(50, 0.50), (100, 0.58)],   # reaches 0.525 at 100
                                   ("async", 1): [(500, 0.49)]})])          # never: its end 500
    t = virtual_time.paired_times(c, "sync", target=0.525).set_index(["arm", "seed"])
    # sync reaches 0.525 at 200 (seed 0) and 450 (seed 1)
    assert t.loc[("async", 0), "ratio"] == pytest.approx(100 / 200)
    assert t.loc[("async", 0), "kind"] == "reached"
    assert t.loc[("async", 1), "ratio"] == pytest.approx(500 / 450)
    assert t.loc[("async", 1), "kind"] == "arm never reached"
    high = virtual_time.paired_times(c, "sync", target=0.625).set_index(["arm", "seed"])
    assert high.loc[("sync", 0), "kind"] == "neither" and math.isnan(high.loc[("sync", 0), "ratio"])
    assert high.loc[("sync", 1), "kind"] == "reached"


def test_every_arm_is_scored_on_one_grid():
    c = pd.concat([PILOT, _curves({("async", 0): [(50, 0.5), (250, 0.7)]})])
    grid = virtual_time.common_grid(c, points=6)  # 0..250, the earliest end
    assert grid.tolist() == pytest.approx([0, 50, 100, 150, 200, 250])
    g = virtual_time.on_grid(c, grid)
    a = g[(g["arm"] == "async")]["accuracy"].tolist()
    assert np.isnan(a[0]) and a[1:] == [0.5, 0.5, 0.5, 0.5, 0.7]
    assert g[(g["arm"] == "sync") & (g["seed"] == 1)]["accuracy"].tolist()[3:] == [0.45, 0.45, 0.45]
