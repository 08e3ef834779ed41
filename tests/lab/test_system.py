"""fedlib.lab.system's configurations on the full profile's path (quick=False): built without
running anything, so the call that crashed notebook 06 and `fedlib bench system` hours into a
full-profile job (`RunConfig.replace`, a method it does not have) fails here in milliseconds."""

import pytest

from fedlib.lab import system


@pytest.mark.parametrize("quick", [True, False])
def test_local_steps_base_is_the_accuracy_base_renamed(tmp_path, quick):
    acc = system.accuracy_base(tmp_path, quick)
    steps = system.local_steps_base(tmp_path, quick)
    assert steps.name == "system-steps" and acc.name == "system-acc"
    assert steps.to_dict() | {"name": "system-acc"} == acc.to_dict()
    assert steps.federation.rounds == (2 if quick else 3)
    assert steps.data.max_train_samples == (480 if quick else 960)


def test_local_steps_grid_spends_the_same_budget_per_row():
    grid = system.local_steps_grid(16)
    assert [g["client.local_steps"] for g in grid] == [1, 2, 4, 8, 16]
    assert all(g["client.local_steps"] * g["federation.rounds"] == 16 for g in grid)


def test_timing_grid_runs_only_the_strategies_named():
    """An empty list is no strategy, not every strategy: quick's 06 names only the two baselines,
    and the record of 35c39df ran the 14 descriptive strategy runs anyway (630 s)."""
    assert system.timing_grid([4, 12], []) == []
    assert [g["strategy"] for g in system.timing_grid([4], ["p2p star"])] == ["p2p star"]
    assert len(system.timing_grid([4])) == len(system.STRATEGIES)
