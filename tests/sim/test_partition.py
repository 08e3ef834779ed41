"""Partition invariants for every kind, and the report's distances."""

import numpy as np
import pytest

from fedlib.config import PartitionConfig
from fedlib.sim import partition
from fedlib.sim.partition_report import report

LABELS = np.random.default_rng(0).integers(0, 3, 1200)
KINDS = [PartitionConfig(kind="iid"), PartitionConfig(kind="dirichlet", alpha=0.3),
         PartitionConfig(kind="dirichlet_mix", alpha=0.3),
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


def test_dirichlet_mix_alpha_controls_skew_at_equal_sizes():
    big, mid, small = (_tv(PartitionConfig(kind="dirichlet_mix", alpha=a)) for a in (1e4, 1.0, 0.05))
    assert big < 0.1 < mid < small
    assert abs(big - _tv(PartitionConfig(kind="iid"))) < 0.05  # alpha -> inf approaches IID
    assert small > 0.4
    mix = partition.partition(LABELS, 7, PartitionConfig(kind="dirichlet_mix", alpha=0.05), 0)
    sizes = [len(p) for p in mix]
    assert max(sizes) - min(sizes) <= 1


def _class_shares(labels, parts, n_classes):
    """[client, class] fraction of each class's examples that the client holds."""
    counts = np.array([np.bincount(labels[p], minlength=n_classes) for p in parts])
    return counts / np.bincount(labels, minlength=n_classes)


def test_dirichlet_splits_each_class_by_dir_alpha():
    """Per class, client i's share is the i-th entry of a Dir(alpha · 1_N) draw, so it is
    Beta(alpha, (N-1)·alpha): mean 1/N, variance (1/N)(1 - 1/N)/(N·alpha + 1). With N = 4,
    alpha = 0.3: mean 0.25, variance 0.25 · 0.75 / 2.2 = 0.08523. (The equal-size dirichlet_mix
    gives ~0.059 here.) Class sizes ~400 make rounding to whole examples negligible; the
    estimate over 300 draws x 3 classes x 4 clients has sd ~0.0016 across seeds."""
    rng = np.random.default_rng(3)
    shares = np.concatenate([_class_shares(LABELS, partition.dirichlet(LABELS, 4, PartitionConfig(
        kind="dirichlet", alpha=0.3), rng), 3).ravel() for _ in range(300)])
    assert abs(shares.mean() - 0.25) < 1e-9  # each class's shares sum to 1 over the 4 clients
    assert 0.079 < shares.var() < 0.092


def test_dirichlet_alpha_limits():
    """alpha -> inf: every client gets ~1/N of every class (so IID label mix, equal sizes);
    alpha small: most of each class goes to one client, and sizes differ."""
    labels = np.random.default_rng(1).integers(0, 10, 2000)
    flat = partition.partition(labels, 5, PartitionConfig(kind="dirichlet", alpha=1e4), 0)
    assert np.abs(_class_shares(labels, flat, 10) - 0.2).max() < 0.03
    assert report(flat, labels, 10)["tv"].max() < 0.05
    skew = partition.partition(labels, 5, PartitionConfig(kind="dirichlet", alpha=0.05), 0)
    assert _class_shares(labels, skew, 10).max(axis=0).mean() > 0.8  # the top client's share per class
    sizes = [len(p) for p in skew]
    assert max(sizes) > 2 * min(sizes)


def test_dirichlet_assigns_every_example_once_and_respects_min_samples():
    cfg = PartitionConfig(kind="dirichlet", alpha=0.5, min_samples=30)
    parts = partition.partition(LABELS, 12, cfg, seed=4)
    assert min(len(p) for p in parts) >= 30
    for c in range(3):  # each class exactly once over the clients
        held = np.concatenate([p[LABELS[p] == c] for p in parts])
        assert np.array_equal(np.sort(held), np.flatnonzero(LABELS == c))  # noqa: SIM300
    again = partition.partition(LABELS, 12, cfg, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


class _CountingRng:
    """Counts Dirichlet draws of a real generator (the partition only shuffles and draws)."""

    def __init__(self) -> None:
        self.rng, self.draws = np.random.default_rng(0), 0

    def permutation(self, x):
        return self.rng.permutation(x)

    def dirichlet(self, a):
        self.draws += 1
        return self.rng.dirichlet(a)


def test_dirichlet_gives_up_after_bounded_draws_naming_the_keys(monkeypatch):
    impossible = PartitionConfig(kind="dirichlet", alpha=0.01, min_samples=100)  # 12 x 100 = all 1200
    monkeypatch.setattr(partition, "MAX_DRAWS", 7)
    rng = _CountingRng()
    msg = r"7 draws .*partition\.alpha=0\.01.*partition\.min_samples=100"
    with pytest.raises(partition.PartitionError, match=msg):
        partition.dirichlet(LABELS, 12, impossible, rng)  # type: ignore[arg-type]
    assert rng.draws == 7 * 3  # one Dir(alpha · 1_12) per class per draw
    monkeypatch.undo()
    with pytest.raises(partition.PartitionError, match="partition.alpha"):
        partition.partition(LABELS, 12, impossible, 0)


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


def test_dirichlet_doc_gives_the_hsu_conversion():
    """fedlib's alpha is the per-class concentration (Yurochkin et al. / flwr); the docstring
    must say it is not Hsu et al.'s alpha and how to convert (alpha_H = C · alpha)."""
    doc = " ".join(partition.dirichlet.__doc__.split())
    assert "not* Hsu et al." in doc and "alpha_H = C · alpha" in doc
