"""fedlib.lab.figures: the t-interval of `stats` on every bar, a point measured once drawn as a
point with "n=1" in the legend (never a zero-width bar), and n stated on every figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fedlib.lab import figures  # noqa: E402

RUNS = pd.DataFrame({"x": [1, 1, 1, 2], "y": [1.0, 2.0, 3.0, 5.0], "k": ["a"] * 4})


def _bars(ax):
    """(x, y-extent) of every error bar drawn on `ax`."""
    out = []
    for coll in ax.collections:
        for seg in (s for s in coll.get_segments() if len(s)):  # a NaN error draws nothing
            out.append((float(seg[0][0]), float(abs(seg[1][1] - seg[0][1]))))
    return out


def test_ci_lines_draws_the_t_interval_and_no_zero_width_bar():
    fig, ax = plt.subplots()
    figures.ci_lines(RUNS, "x", "y", hue="k", ax=ax)
    bars = _bars(ax)
    assert bars == [(1.0, pytest.approx(2 * 2.484138, abs=1e-5))]  # x=2 (one run) has none
    labels = ax.get_legend_handles_labels()[1]
    assert "a (n=3)" in labels and "n=1: no interval" in labels
    assert "t-CI" in ax.get_ylabel()
    plt.close(fig)


def test_ci_bars_leaves_a_single_run_without_whisker_and_states_n():
    fig, ax = plt.subplots()
    figures.ci_bars(RUNS, "x", "y", ax=ax)
    bars = _bars(ax)
    assert len(bars) == 1 and bars[0][1] == pytest.approx(2 * 2.484138, abs=1e-5)
    assert "n=1–3" in ax.get_ylabel() and "n=1: no interval" in ax.get_legend_handles_labels()[1]
    plt.close(fig)


def test_n_text():
    assert figures.n_text([3, 3]) == "n=3" and figures.n_text(np.array([1, 3, 2])) == "n=1–3"
