"""fedlib.lab.forest: one line per claim, grouped by family and unit, against the region where the
claim holds; intervals that leave a panel (≤ 0 on a log axis) stop at its edge with an arrow;
colours by verdict; newer columns (basis, holm) shown when present; no overlapping text."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from fedlib.lab import figures, forest

from .synthetic import CLAIMS

matplotlib.use("Agg")


def test_panels_by_family_then_unit_in_table_order():
    extra = CLAIMS.iloc[[0]].assign(claim="accuracy of FedBuff K=4 at sync's virtual time non-inferior")
    ps = forest.panels(pd.concat([CLAIMS, extra], ignore_index=True))
    assert [(p.family, p.unit, len(p.rows)) for p in ps] == [
        ("accuracy", "accuracy", 2), ("communication", "size", 1), ("asynchrony", "time", 1),
        ("asynchrony", "accuracy", 1)]
    assert [p.log for p in ps] == [False, False, True, False]
    assert (ps[0].holds_lo, ps[0].holds_hi) == (-0.03, math.inf)
    assert (ps[1].holds_lo, ps[1].holds_hi) == (0.8, 1.25)


def test_a_family_column_wins():
    t = CLAIMS.assign(family=["accuracy", "accuracy", "communication", "communication"])
    assert [p.family for p in forest.panels(t)] == ["accuracy", "communication", "communication"]


def _lines(ax):
    return [(tuple(line.get_xdata()), tuple(line.get_ydata()), line.get_color(), line.get_linestyle(),
             line.get_marker()) for line in ax.get_lines()]


def test_one_line_per_claim_coloured_by_verdict_and_clipped_at_the_edge():
    fig = forest.draw(CLAIMS, columns=1)
    axes = [ax for ax in fig.axes if ax.get_yticks().size]
    acc, comm, time = axes
    lines = _lines(acc)
    ci = [line for line in lines if len(line[0]) == 2 and line[1][0] == line[1][1]]
    assert [(line[0], line[2]) for line in ci] == [((-0.02, 0.0), forest.COLORS["holds"]),
                                                   ((-0.06, -0.04), forest.COLORS["does not hold"])]
    # the time ratio's CI [-0.2, 1.2] on a log axis: drawn from the left edge, with an arrow there
    lo = time.get_xlim()[0]
    arrow = [line for line in _lines(time) if line[4] == "<"]
    assert time.get_xscale() == "log" and arrow and arrow[0][0] == (lo,)
    (row,) = [line for line in _lines(time) if len(line[0]) == 2 and line[1][0] == line[1][1]]
    assert row[0] == pytest.approx((lo, 1.2))
    # the projected row: dashed, and its label says so
    grey = forest.COLORS["not resolved at this budget"]
    assert any(line[3] == "--" and line[2] == grey for line in _lines(comm))
    assert "[projected]" in comm.get_yticklabels()[0].get_text()
    # Holm differs from the row's verdict: the label's second line says it
    assert acc.get_yticklabels()[1].get_text().endswith("Holm-adjusted: not resolved at this budget")
    assert figures.collisions(fig) == []


def test_the_region_where_a_claim_holds_is_shaded():
    fig = forest.draw(CLAIMS.iloc[[2]], columns=1)
    (ax,) = [ax for ax in fig.axes if ax.get_yticks().size]
    (span,) = ax.patches
    assert (span.get_x(), span.get_x() + span.get_width()) == pytest.approx((0.8, 1.25))


def test_a_row_without_an_estimate_says_so():
    t = CLAIMS.iloc[[0]].assign(effect=np.nan, ci_low=np.nan, ci_high=np.nan, n=0)
    fig = forest.draw(t)
    assert "no estimate" in [x.get_text() for ax in fig.axes for x in ax.texts]


def test_two_columns_when_tall_and_split_known_answer():
    assert forest.split([4, 1, 1, 1, 2], 2) == [2]  # 5 | 4 inches
    assert forest.split([3, 3], 1) == [] and forest.split([3], 2) == []
    many = pd.concat([CLAIMS] * 6, ignore_index=True)
    fig = forest.draw(many)
    assert len(fig.subfigs) == 2 and figures.collisions(fig) == []


def test_an_empty_table_is_one_line_error():
    with pytest.raises(ValueError, match="claims table has no rows"):
        forest.draw(CLAIMS.iloc[:0])


def test_what_every_claim_of_a_panel_ends_with_is_said_once_under_its_axis():
    probe = "linear probe on frozen features (2,695 params)"
    t = CLAIMS.iloc[[0, 1]].assign(claim=lambda d: d["claim"] + f" — {probe}")
    (p,) = forest.panels(t)
    assert p.shared == probe and p.xlabel.endswith(f"\n{probe}")
    assert p.rows["claim"].tolist() == CLAIMS["claim"].iloc[:2].tolist()
    mixed = t.assign(claim=[t["claim"].iloc[0], "other — whole model (22.7M params)"])
    assert forest.shared_tail(mixed["claim"]) == "" and forest.shared_tail(CLAIMS["claim"]) == ""
