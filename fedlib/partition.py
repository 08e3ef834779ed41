"""Split a training set across clients. A partition is a list of index arrays, one per client,
disjoint and covering every example; it depends only on (labels, config, seed), never on ranks.

Kinds (``partition.kind``):
- ``iid``: a seeded random split into equal parts;
- ``dirichlet``: label skew; client label proportions ~ Dir(alpha · C · p_global), equal sizes;
- ``quantity``: size skew with IID labels; client shares ~ Dir(alpha) or lognormal(0, sigma);
- ``shards``: pathological; each client holds ``classes_per_client`` classes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import seeds
from .config import PartitionConfig


class PartitionError(ValueError):
    """A partition that cannot satisfy its constraints (e.g. min_samples)."""


def iid(labels: np.ndarray, n: int, cfg: PartitionConfig, rng: np.random.Generator) -> list[np.ndarray]:
    return list(np.array_split(rng.permutation(len(labels)), n))


def _sizes(shares: np.ndarray, total: int, minimum: int) -> np.ndarray:
    """Integer sizes summing to `total`: `minimum` each, the rest split by `shares`."""
    rest = total - minimum * len(shares)
    raw = shares / shares.sum() * rest
    sizes = np.floor(raw).astype(int)
    sizes[np.argsort(raw - sizes)[::-1][: rest - sizes.sum()]] += 1  # largest remainders
    return sizes + minimum


def quantity(labels: np.ndarray, n: int, cfg: PartitionConfig, rng: np.random.Generator) -> list[np.ndarray]:
    if cfg.quantity == "dirichlet":
        shares = rng.dirichlet(np.full(n, cfg.alpha))
    else:
        shares = rng.lognormal(0.0, cfg.sigma, size=n)
    cuts = np.cumsum(_sizes(shares, len(labels), cfg.min_samples))[:-1]
    return list(np.split(rng.permutation(len(labels)), cuts))


def dirichlet(labels: np.ndarray, n: int, cfg: PartitionConfig, rng: np.random.Generator
              ) -> list[np.ndarray]:
    """Label skew as in Hsu et al. (2019): client i has an equal share of examples and label
    proportions q_i ~ Dir(alpha · p), p the global label distribution; draws come without
    replacement, so when a class runs out the client's remaining draws follow q_i over the
    classes still in stock (or the stock itself when q_i puts no mass there)."""
    classes, inverse = np.unique(labels, return_inverse=True)
    pools = [list(rng.permutation(np.flatnonzero(inverse == c))) for c in range(len(classes))]
    glob = np.bincount(inverse) / len(labels)
    parts = []
    for size in (len(p) for p in np.array_split(np.arange(len(labels)), n)):
        q = rng.dirichlet(alpha_vec(cfg.alpha, glob))
        take = np.zeros(len(classes), dtype=int)
        while (need := size - take.sum()) > 0:
            stock = np.array([len(p) for p in pools]) - take
            w = np.where(stock > 0, q, 0.0)
            w = w if w.sum() > 1e-12 else stock.astype(float)
            take += np.minimum(rng.multinomial(need, w / w.sum()), stock)
        parts.append(np.concatenate([[pools[c].pop() for _ in range(k)] for c, k in enumerate(take)]
                                    ).astype(np.int64))
    return parts


def alpha_vec(alpha: float, glob: np.ndarray) -> np.ndarray:
    """Concentration alpha · p, floored so a rare class never gets exactly zero."""
    return np.maximum(alpha * glob * len(glob), 1e-3)


def shards(labels: np.ndarray, n: int, cfg: PartitionConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Client i holds k classes, cyclically consecutive in a random class order (so every class
    has a holder when n·k ≥ C); each class is split evenly among its holders."""
    classes = rng.permutation(np.unique(labels))
    k = min(cfg.classes_per_client, len(classes))
    if n * k < len(classes):
        raise PartitionError(
            f"partition.kind='shards': federation.num_clients={n} x partition.classes_per_client={k} "
            f"< {len(classes)} classes, so some examples would belong to no client")
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for i in range(n):
        for j in range(k):
            holders[int(classes[(i * k + j) % len(classes)])].append(i)
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c, who in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        for i, chunk in zip(who, np.array_split(idx, len(who)), strict=True):
            parts[i].append(chunk)
    return [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]


_KINDS: dict[str, Callable[..., list[np.ndarray]]] = {
    "iid": iid, "dirichlet": dirichlet, "quantity": quantity, "shards": shards,
}


def partition(labels: np.ndarray, num_clients: int, cfg: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Client index arrays (sorted); raises PartitionError naming the key when a constraint fails."""
    labels = np.asarray(labels)
    if num_clients * cfg.min_samples > len(labels):
        raise PartitionError(
            f"partition.min_samples={cfg.min_samples} x federation.num_clients={num_clients} "
            f"exceeds the {len(labels)} training examples"
        )
    rng = seeds.rng(seed, seeds.Stream.PARTITION)
    parts = [np.sort(p) for p in _KINDS[cfg.kind](labels, num_clients, cfg, rng)]
    small = [i for i, p in enumerate(parts) if len(p) < cfg.min_samples]
    if small:
        raise PartitionError(
            f"partition.kind={cfg.kind!r}: clients {small[:5]} got fewer than "
            f"partition.min_samples={cfg.min_samples} examples"
        )
    return parts
