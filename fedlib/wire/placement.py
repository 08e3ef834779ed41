"""Which rank trains which client this round. Round-robin ignores how much work a client
brings; `balanced` assigns by estimated work with LPT — longest first onto the least-loaded
rank — whose makespan is within 4/3 of the optimum (Graham 1969). Deterministic: ties go to
the lower client id / rank.

Estimated work = local steps + a per-client fixed cost in steps (loading the global weights,
building the optimizer, packing the update), which `CostModel` fits to the rounds already
measured. Placement only moves work between ranks — the aggregate does not depend on it — so
measured times may steer it without making results irreproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def round_robin(clients: Sequence[int], ranks: int) -> list[list[int]]:
    return [list(clients[r::ranks]) for r in range(ranks)]


def balanced(clients: Sequence[int], work: Sequence[float], ranks: int) -> list[list[int]]:
    """LPT: `work[i]` is the cost of `clients[i]`; each rank's clients come back sorted."""
    heap = [(0.0, r) for r in range(ranks)]
    plan: list[list[int]] = [[] for _ in range(ranks)]
    for w, c in sorted(zip(work, clients, strict=True), key=lambda t: (-t[0], t[1])):
        load, r = heapq.heappop(heap)
        plan[r].append(c)
        heapq.heappush(heap, (load + w, r))
    return [sorted(p) for p in plan]


class CostModel:
    """busy seconds of a rank in a round ≈ a·(its local steps) + b·(its clients), least squares
    over every (rank, round) observed; `per_client_steps` = b/a (0 until the fit is possible
    and sensible)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []

    def observe(self, steps: float, clients: float, busy_s: float) -> None:
        if clients > 0:
            self.rows.append((float(steps), float(clients), float(busy_s)))

    def per_client_steps(self) -> float:
        if len(self.rows) < 2:
            return 0.0
        x = np.array([r[:2] for r in self.rows])
        if np.linalg.matrix_rank(x) < 2:
            return 0.0
        (a, b), *_ = np.linalg.lstsq(x, np.array([r[2] for r in self.rows]), rcond=None)
        return float(b / a) if a > 0 and b > 0 and np.isfinite(b / a) else 0.0
