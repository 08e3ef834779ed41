"""Partition invariants for every kind, and the report's distances."""

import numpy as np
import pytest

from fedlib import partition
from fedlib.config import PartitionConfig
from fedlib.partition_report import report

LABELS = np.random.default_rng(0).integers(0, 3, 1200)
KINDS = [PartitionConfig(kind="iid"), PartitionConfig(kind="dirichlet", alpha=0.3),
         PartitionConfig(kind="quantity"), PartitionConfig(kind="quantity", quantity="dirichlet"),
         PartitionConfig(kind="shards", classes_per_client=1)]


def _tv(cfg, n=12, seed=0):
    return report(partition.partition(LABELS, n, cfg, seed), LABELS, 3)["tv"].mean()


@pytest.mark.parametrize("cfg", KINDS, ids=lambda c: f"{c.kind}-{c.quantity}")
def test_disjoint_complete_seeded(cfg):
    parts = partition.partition(LABELS, 12, cfg, seed=1)
    allidx = np.concatenate(parts)
    assert len(allidx) == len(LABELS) and len(np.unique(allidx)) == len(LABELS)
    assert all(len(p) >= cfg.min_samples for p in parts)
    again = partition.partition(LABELS, 12, cfg, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition.partition(LABELS, 12, cfg, seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_iid_sizes_equal():
    sizes = [len(p) for p in partition.partition(LABELS, 7, PartitionConfig(), 0)]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_alpha_controls_skew():
    big, mid, small = (_tv(PartitionConfig(kind="dirichlet", alpha=a)) for a in (1e4, 1.0, 0.05))
    assert big < 0.1 < mid < small
    assert abs(big - _tv(PartitionConfig(kind="iid"))) < 0.05  # alpha -> inf approaches IID
    assert small > 0.4


def test_quantity_skew_keeps_labels_iid_but_sizes_unequal():
    rep = report(partition.partition(LABELS, 12, PartitionConfig(kind="quantity", sigma=1.5), 0), LABELS, 3)
    assert rep["n"].max() > 3 * rep["n"].min()
    big = rep[rep["n"] >= 50]
    assert big["tv"].max() < 0.2


def test_shards_hold_at_most_k_classes():
    for k in (1, 2):
        parts = partition.partition(LABELS, 9, PartitionConfig(kind="shards", classes_per_client=k), 0)
        assert max(len(np.unique(LABELS[p])) for p in parts) <= k


def test_min_samples_errors_name_the_key():
    with pytest.raises(partition.PartitionError, match="partition.min_samples"):
        partition.partition(LABELS, 12, PartitionConfig(min_samples=101), 0)
    skewed = PartitionConfig(kind="quantity", sigma=3.0, min_samples=40)
    assert min(len(p) for p in partition.partition(LABELS, 12, skewed, 0)) >= 40
    with pytest.raises(partition.PartitionError, match="classes_per_client"):
        partition.partition(LABELS, 2, PartitionConfig(kind="shards", classes_per_client=1), 0)


def test_report_distances_known_answer():
    labels = np.array([0, 0, 1, 1])  # global (0.5, 0.5)
    rep = report([np.array([0, 1]), np.array([2, 3])], labels, 2)
    assert rep["n"].tolist() == [2, 2] and rep["label_0"].tolist() == [2, 0]
    assert rep["tv"].tolist() == [0.5, 0.5]
    assert rep["emd"].tolist() == [0.5, 0.5]  # move half the mass one label over
