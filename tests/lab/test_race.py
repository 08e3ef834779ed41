"""fedlib.lab.race: 08's plan (every arm to sync's virtual time), its scores on hand-made curves,
the FedBuff goal's verdicts computed by hand, and the quick profile's pilot read back."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedlib import config
from fedlib.lab import power, race, schedule, virtual_time
from fedlib.lab.verdict import FAILS, HOLDS, NO_LEARNING, OPEN

BASE = {"federation.num_clients": 12, "federation.clients_per_round": 4, "client.local_steps": 2,
        "participation.speed": "lognormal", "participation.speed_sigma": 1.0}


def _curve(arm, seed, times, accs):
    return pd.DataFrame({"arm": arm, "seed": seed, "round": range(1, len(times) + 1), "virtual_s": times,
                         "accuracy": accs, "updates": [4 * (i + 1) for i in range(len(times))]})


def test_plan_runs_every_arm_to_the_reference_virtual_time():
    base = config.load(None, BASE)
    arms = {race.SYNC: {"federation.rounds": 3, "federation.eval_every": 1},
            "FedBuff K=2": {"federation.mode": "fedbuff", "federation.concurrency": 4,
                            "federation.buffer_size": 2},
            "deadline": {"participation.deadline_steps": 3.0}}
    entries = race.plan(base, arms, [0, 1])
    assert [(e["arm"], e["seed"]) for e in entries] == [(a, s) for a in arms for s in (0, 1)]
    for e in entries:
        cfg = config.replace(base, **{k: v for k, v in e.items() if "." in k or k == "seed"})
        budget = schedule.sync_time(config.replace(base, seed=e["seed"]), 3)
        if e["arm"] == race.SYNC:
            assert e["federation.rounds"] == 3
        elif cfg.federation.mode == "sync":  # reaches the budget, one round fewer does not
            assert schedule.sync_time(cfg, e["federation.rounds"]) >= budget > schedule.sync_time(
                cfg, e["federation.rounds"] - 1)
        else:
            assert e["federation.rounds"] == schedule.async_steps(cfg, budget)[0]
    with pytest.raises(ValueError, match="must be one of the arms, synchronous"):
        race.plan(base, {"FedBuff K=2": arms["FedBuff K=2"]}, [0])


def test_score_by_hand():
    """Seed 0: sync reaches 0.6 at t=20 and ends at t=30 with 0.70. FedBuff's first evaluation at
    or above 0.6 is at t=6 (ratio 0.3); at t=30 its last evaluation is t=27 (0.66): Δ −0.04,
    12 updates. FedAsync never reaches 0.6: bounded by its end over sync's time, 31 / 20."""
    c = pd.concat([_curve(race.SYNC, 0, [10, 20, 30], [0.50, 0.60, 0.70]),
                   _curve("FedBuff K=4", 0, [3, 6, 27, 33], [0.55, 0.62, 0.66, 0.72]),
                   _curve("FedAsync", 0, [5, 31], [0.40, 0.58])])
    p = race.score(c, target=0.6).set_index("arm")
    assert p.loc[race.SYNC, ["accuracy_at_budget", "acc_diff", "ratio"]].tolist() == [0.70, 0.0, 1.0]
    fb = p.loc["FedBuff K=4"]
    assert (fb["budget_s"], fb["accuracy_at_budget"], fb["updates_at_budget"]) == (30, 0.66, 12)
    assert fb["kind"] == "reached"
    assert fb["acc_diff"] == pytest.approx(-0.04) and fb["ratio"] == pytest.approx(0.3)
    fa = p.loc["FedAsync"]
    assert fa["kind"] == "arm never reached" and fa["ratio"] == pytest.approx(31 / 20)
    assert fa["accuracy_at_budget"] == 0.40 and (p["target"] == 0.6).all()


def _paired(ratios, diffs, kinds=None, target=0.6):
    kinds = kinds or ["reached"] * len(ratios)
    return pd.DataFrame({"arm": "FedBuff K=4", "seed": range(len(ratios)), "ratio": ratios, "acc_diff": diffs,
                         "kind": kinds, "target": target})


def test_goal_holds_by_hand():
    """log ratios of 0.2, 0.25, 0.3: mean −1.39994, sd 0.20304, t(0.975, 2) = 4.30265 → upper end
    exp(−1.39994 + 4.30265·0.20304/√3) = 0.4084 ≤ 0.5; Δ 0.01 ± 0.02484 ≥ −0.03: holds."""
    r = race.goal("FedBuff K=4", _paired([0.2, 0.25, 0.3], [0.01, 0.02, 0.0]), left=0.05)
    assert r["verdict"] == HOLDS
    assert r["effect"] == pytest.approx(math.exp(-1.39994), rel=1e-4)
    assert r["ci_high"] == pytest.approx(0.4084, abs=2e-4) and r["n"] == 3


@pytest.mark.parametrize("ratios,diffs,kinds,want", [
    ([0.45, 0.6, 0.5], [0.0, 0.0, 0.01], None, OPEN),  # the interval straddles 0.5
    ([0.8, 0.9, 1.0], [0.0, 0.01, 0.0], None, FAILS),  # lower end exp(−0.3867) = 0.679 > 0.5
    ([0.2, 0.25, 0.3], [-0.10, -0.09, -0.11], None, FAILS),  # fast enough, but inferior accuracy
    ([0.2, 0.25, 0.3], [0.0, 0.0, 0.01], ["reached", "reached", "arm never reached"], OPEN),  # a bound only
])
def test_goal_verdicts(ratios, diffs, kinds, want):
    assert race.goal("FedBuff K=4", _paired(ratios, diffs, kinds), left=0.05)["verdict"] == want


def test_goal_needs_learning_left():
    """Sync gained 0.005 after half its budget (< 0.01): the time would be evaluation noise."""
    r = race.goal("FedBuff K=4", _paired([0.2, 0.25, 0.3], [0.01, 0.02, 0.0]), left=0.005)
    assert r["verdict"] == NO_LEARNING and r["note"].startswith(f"by the rule alone: {HOLDS}")


PILOT = Path(__file__).parent / "fixtures" / "pilot08"


def test_the_quick_profiles_pilot_rederives():
    """params/quick/08_async.yaml's numbers, from the pilot's committed curves: the target, sync's
    learning left, FedBuff's goal for every K, and the seeds its time rows need (80 % upper bound
    of the pilot's sd, 80 % power): 3 for "faster than sync"."""
    c = pd.read_csv(PILOT / "curves.csv")
    sync = c[c["arm"] == race.SYNC]
    target = virtual_time.pilot_target(sync)
    assert target == pytest.approx(0.4893, abs=1e-4)
    assert virtual_time.learning_left(sync) == pytest.approx(0.105, abs=1e-3)
    paired = race.score(c, target)
    table = race.summary(paired).set_index("arm")
    assert table.loc["FedBuff K=3", "time_ratio"] == pytest.approx(0.199, abs=1e-3)
    assert (table.drop(race.SYNC)["time_rule"] == HOLDS).all()
    for k in (3, 6, 12):
        assert race.goal(f"FedBuff K={k}", paired, 0.105)["verdict"] == HOLDS
    for arm, g in paired[paired["arm"].str.startswith("FedBuff")].groupby("arm"):
        logs = np.log(g["ratio"])
        assert power.seeds_for(logs.mean(), logs.std(ddof=1), len(g) - 1) == 3, arm
    cost = pd.read_csv(PILOT / "cost.csv")
    assert set(cost["seed"]) == {100, 101, 102} and len(cost) == 18  # 6 arms x 3 seeds
