"""Which rank trains which client this round. Round-robin ignores how much work a client
brings; `balanced` assigns by estimated work (local steps, since every step of one model costs
about the same) with LPT — longest first onto the least-loaded rank — whose makespan is
within 4/3 of the optimum (Graham 1969). Deterministic: ties go to the lower client id / rank.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


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


def makespan(plan: Sequence[Sequence[int]], cost: dict[int, float]) -> float:
    return max((sum(cost[c] for c in p) for p in plan), default=0.0)
