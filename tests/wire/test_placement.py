"""Which rank trains which client (fedlib.wire.placement): LPT within 4/3 of the optimum, and the
cost model's per-client cost changing the plan."""

import itertools
from collections.abc import Sequence

import pytest

from fedlib.wire import placement


def makespan(plan: Sequence[Sequence[int]], cost: dict[int, float]) -> float:
    """The busiest rank's total cost under `plan` (was fedlib.wire.placement.makespan: only tests used it)."""
    return max((sum(cost[c] for c in p) for p in plan), default=0.0)


def test_balanced_placement_within_4_3_of_optimal():
    work = [7, 5, 4, 4, 3, 3, 2, 2, 1]
    clients = list(range(len(work)))
    cost = dict(zip(clients, work, strict=True))
    best = min(max(sum(w for w, a in zip(work, assign, strict=True) if a == r) for r in range(3))
               for assign in itertools.product(range(3), repeat=len(work)))
    plan = placement.balanced(clients, work, 3)
    assert plan == placement.balanced(clients, work, 3)  # deterministic
    assert sorted(c for p in plan for c in p) == clients
    assert makespan(plan, cost) <= 4 / 3 * best
    assert makespan(plan, cost) < makespan(placement.round_robin(clients, 3), cost)


def test_cost_model_recovers_per_client_cost_and_changes_the_plan():
    costs = placement.CostModel()
    assert costs.per_client_steps() == 0.0
    for steps, n in ((10, 2), (4, 6), (7, 3), (12, 5)):  # busy = 0.5 s/step + 1.5 s/client
        costs.observe(steps, n, 0.5 * steps + 1.5 * n)
    assert costs.per_client_steps() == pytest.approx(3.0)
    clients, steps = list(range(6)), [9, 1, 1, 1, 1, 1]  # one long client, five short ones
    by_steps = placement.balanced(clients, steps, 2)
    by_cost = placement.balanced(clients, [s + 3.0 for s in steps], 2)
    assert by_steps == [[0], [1, 2, 3, 4, 5]] and by_cost == [[0, 4], [1, 2, 3, 5]]
    true = {c: 0.5 * s + 1.5 for c, s in zip(clients, steps, strict=True)}
    assert makespan(by_steps, true) == 10.0 and makespan(by_cost, true) == 8.0
