"""fedlib.lab.figures: the t-interval of `stats` on every bar, a point measured once drawn as a
point with "n=1" in the legend (never a zero-width bar), and n stated on every figure."""

import math

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


def _lines_y(ax):
    return np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()] or [np.zeros(0)])


def test_two_times_are_drawn_as_their_runs_not_a_t_interval():
    """Figure 1a's bug: n = 2 positive times drew a t-interval down to −1 s. On the log scale with
    n ≤ 3 there is no error bar; each run is a dot and nothing drawn is ≤ 0."""
    runs = pd.DataFrame({"clients": [2, 2, 4, 4], "comm_s": [0.1, 0.9, 0.2, 0.3], "k": ["p2p"] * 4})
    fig, ax = plt.subplots()
    table = figures.ci_lines(runs, "clients", "comm_s", hue="k", ax=ax, scale="log")
    assert _bars(ax) == []
    assert table["comm_s"].tolist() == pytest.approx([0.3, math.sqrt(0.06)])  # geometric means
    ys = _lines_y(ax)
    assert {0.1, 0.9, 0.2, 0.3} <= set(ys.round(6)) and (ys > 0).all()
    assert "p2p (n=2, each run a dot)" in ax.get_legend_handles_labels()[1]
    assert "geometric mean" in ax.get_ylabel()
    plt.close(fig)


def test_log_scale_whiskers_are_the_interval_of_the_logs():
    """0.01, 0.02, 0.03, 1, 2 s: the t-interval is 0.612 ± 1.09 (below 0); on the log scale the
    whisker runs from exp(m − h) to exp(m + h), m and h of the logs, both > 0."""
    y = [0.01, 0.02, 0.03, 1.0, 2.0]
    logs = np.log(y)
    m, h = logs.mean(), 2.776445105 * logs.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    fig, ax = plt.subplots()
    figures.ci_bars(pd.DataFrame({"c": ["a"] * 5, "t": y}), "c", "t", ax=ax, scale="log")
    ((x, extent),) = _bars(ax)
    assert extent == pytest.approx(math.exp(m + h) - math.exp(m - h))
    seg = ax.collections[0].get_segments()[0]
    assert min(seg[0][1], seg[1][1]) == pytest.approx(math.exp(m - h)) and math.exp(m - h) > 0
    plt.close(fig)


def test_accuracy_interval_is_cut_at_one():
    runs = pd.DataFrame({"x": [1, 1, 1], "acc": [0.5, 0.9, 1.0]})
    fig, ax = plt.subplots()
    figures.ci_lines(runs, "x", "acc", ax=ax, bounds=(0.0, 1.0))
    seg = ax.collections[0].get_segments()[0]
    assert max(seg[0][1], seg[1][1]) == pytest.approx(1.0)
    plt.close(fig)


@pytest.mark.parametrize("clients", [32, 96])
def test_heatmap_labels_every_kth_client_without_collisions(clients):
    rep = pd.DataFrame({"client": range(clients), **{f"label_{c}": np.arange(clients) % 9 for c in range(7)}})
    fig, ax = plt.subplots(figsize=(5.5, 4))
    figures.plot_label_heatmap(rep, ax=ax)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    step = figures.tick_step(clients)
    assert labels == [str(c) for c in range(0, clients, step)] and len(labels) <= 10
    assert figures.collisions(fig) == []
    plt.close(fig)


def test_collisions_finds_two_titles_that_run_into_each_other(tmp_path):
    """04's two subplot titles, as they were drawn in an 11-inch figure."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.set_title("test accuracy vs dropout probability (5 seeds)")
    b.set(title="simulated round time and mean wait for the slowest (5 seeds)",
          ylabel="simulated seconds (mean, 95% t-CI, n=5)")
    found = figures.collisions(fig)
    assert found and all("simulated round time" in a for a, _ in found)  # wider than its axes
    with pytest.warns(UserWarning, match="x.png: 'simulated round time and mean wait"):
        assert figures.save(fig, tmp_path, "x") is None  # nothing for a notebook cell to print
    assert (tmp_path / "x.png").is_file()
    b.set_title("round time and wait\nfor the slowest (5 seeds)")
    assert figures.collisions(fig) == []
    plt.close(fig)
