"""fedlib.lab.schedule: the virtual time of an arm, known before it trains — checked against what
real runs' clocks wrote, and the speed law's quantiles by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from fedlib import config, runner
from fedlib.lab import schedule, virtual_time
from fedlib.sim import participation

SPEED = {"participation.speed": "lognormal", "participation.speed_sigma": 1.0, "federation.num_clients": 6,
         "federation.clients_per_round": 3, "federation.checkpoint_every": 0, "federation.export": False,
         "client.local_steps": 2}


def test_deadline_quantile_of_the_speed_law_by_hand():
    p = config.load(None, {"participation.speed": "lognormal",
                           "participation.speed_sigma": 1.0}).participation
    assert schedule.duration_quantile(p, 2, 0.8) == pytest.approx(2 * math.exp(0.8416212), rel=1e-6)
    assert schedule.duration_quantile(p, 3, 0.5) == pytest.approx(3.0)  # the median speed is 1
    u = config.load(None, {"participation.speed": "uniform", "participation.speed_max": 4.0}).participation
    assert schedule.duration_quantile(u, 2, 0.5) == pytest.approx(5.0)  # 2 x (1 + 0.5 x 3)
    assert schedule.duration_quantile(config.load(None, {}).participation, 4, 0.9) == 4.0
    with pytest.raises(ValueError, match="client.local_steps"):
        schedule.duration_quantile(p, None, 0.8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        schedule.duration_quantile(p, 2, 1.0)


def test_the_deadline_drops_the_slowest_share_of_drawn_clients():
    """Over many drawn fates, the share later than the p80 deadline is ~0.2 (it drops what it says)."""
    cfg = config.load(None, {**SPEED, "federation.num_clients": 1000})
    d = schedule.duration_quantile(cfg.participation, 2, 0.8)
    late = np.mean([participation.fate(cfg.participation, 0, 1, c).speed * 2 > d for c in range(1000)])
    assert late == pytest.approx(0.2, abs=0.04)


def test_sync_rounds_length_is_what_the_runs_clock_reads(tiny_cfg):
    """Sync, and sync with a deadline that makes clients late: the schedule's cumulative round
    lengths equal the virtual times `virtual_time.curve` reads from the run's clients.csv."""
    for extra in ({}, {"participation.deadline_steps": 2.5}):
        cfg = tiny_cfg(**SPEED, **extra, **{"federation.rounds": 4, "name": f"s{len(extra)}"})
        runner.run(cfg, progress=False)
        got = virtual_time.curve(cfg.run_dir)["virtual_s"].to_numpy()
        want = [schedule.sync_time(cfg, r) for r in range(1, 5)]
        np.testing.assert_allclose(got, want, rtol=1e-9)
        assert schedule.sync_rounds(cfg, want[2]) == (3, pytest.approx(want[2]))
        assert schedule.sync_rounds(cfg, want[2] + 1e-6)[0] == 4
    late = pd.read_csv(cfg.run_dir / "clients.csv")["outcome"].eq("late").sum()
    assert late > 0  # the deadline arm did drop clients: its branch was tested


@pytest.mark.parametrize("mode,k", [("fedbuff", 2), ("fedasync", None)])
def test_async_steps_reach_the_budget_as_the_run_does(tiny_cfg, mode, k):
    """The server steps the schedule gives reach the budget in the run itself: the run's last
    step is at or past it, the one before it short of it, at the times the schedule said."""
    over = {**SPEED, "federation.mode": mode, "federation.concurrency": 3, "federation.buffer_size": k,
            "federation.eval_every": 0, "name": mode}
    budget = 7.0
    plain = config.load(None, {**SPEED, **{x: v for x, v in over.items() if x != "name"}})
    steps, at = schedule.async_steps(plain, budget)
    cfg = tiny_cfg(**over, **{"federation.rounds": steps})
    assert schedule.steps_to(cfg, budget) == steps
    runner.run(cfg, progress=False)
    clock = pd.read_csv(cfg.run_dir / "rounds.csv")["virtual_s"].to_numpy()
    assert len(clock) == steps and clock[-1] == pytest.approx(at) and clock[-1] >= budget > clock[-2]


def test_schedule_refuses_what_it_cannot_know():
    with pytest.raises(ValueError, match="client.local_steps must be set"):
        schedule.steps_to(config.load(None, {"federation.rounds": 2}), 5.0)
    with pytest.raises(ValueError, match="deadline_s is in measured seconds"):
        schedule.steps_to(config.load(None, {**SPEED, "participation.deadline_s": 1.0}), 5.0)
    with pytest.raises(ValueError, match="budget must be > 0"):
        schedule.steps_to(config.load(None, SPEED), 0.0)
