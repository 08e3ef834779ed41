"""Split a training set across clients. A partition is a list of index arrays, one per client,
disjoint and covering every example; it depends only on (labels, config, seed).
"""

from __future__ import annotations

import numpy as np

from .config import PartitionConfig


class PartitionError(ValueError):
    """A partition that cannot satisfy its constraints (e.g. min_samples)."""


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(perm, num_clients)]


_KINDS = {"iid": lambda labels, n, cfg, rng: iid(labels, n, rng)}


def partition(labels: np.ndarray, num_clients: int, cfg: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Client index arrays; raises PartitionError naming the key when a constraint fails."""
    labels = np.asarray(labels)
    if num_clients * cfg.min_samples > len(labels):
        raise PartitionError(
            f"partition.min_samples={cfg.min_samples} x federation.num_clients={num_clients} "
            f"exceeds the {len(labels)} training examples"
        )
    rng = np.random.default_rng([seed, 0x9A27])
    parts = _KINDS[cfg.kind](labels, num_clients, cfg, rng)
    small = [i for i, p in enumerate(parts) if len(p) < cfg.min_samples]
    if small:
        raise PartitionError(
            f"partition.kind={cfg.kind!r}: clients {small[:5]} got fewer than "
            f"partition.min_samples={cfg.min_samples} examples"
        )
    return parts
