"""Asynchronous aggregation: staleness functions, FedBuff and FedAsync server steps by hand
from the papers' equations, the virtual clock, FedBuff ≡ synchronous FedAvg, rank
independence, resume and divergence."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from fedlib import config, runner
from fedlib.config import StrategyConfig
from fedlib.record import checkpoint
from fedlib.sim import vclock
from fedlib.strategies import ServerState, fedasync, fedbuff, staleness

ASYNC = {"federation.mode": "fedbuff", "federation.concurrency": 4, "federation.buffer_size": 2,
         "participation.speed": "lognormal", "participation.speed_sigma": 1.0, "federation.rounds": 4}


def test_staleness_functions_of_xie_et_al():
    assert staleness.weight(7, "constant", 0.5, 4) == 1.0
    assert staleness.weight(3, "polynomial", 0.5, 4) == pytest.approx(0.5)  # (3+1)^-0.5
    assert staleness.weight(0, "polynomial", 2.0, 4) == 1.0
    assert staleness.weight(4, "hinge", 10, 4) == 1.0  # tau <= b
    assert staleness.weight(6, "hinge", 10, 4) == pytest.approx(1 / 21)  # 1 / (10·2 + 1)
    with pytest.raises(ValueError, match="staleness must be >= 0"):
        staleness.weight(-1, "constant", 0.5, 4)


def test_fedbuff_three_server_steps_by_hand():
    """Δ̄ = Σ w·s(τ)·Δ / Σ w with s = (τ+1)^-½, then FedAvgM (β = ½, η = 1): v = β·v + Δ̄, x += v."""
    cfg = StrategyConfig(algorithm="fedavgm", server_lr=1.0, momentum=0.5, staleness="polynomial",
                         staleness_a=0.5)
    A = fedbuff.Arrival
    state = ServerState(torch.tensor([1.0, 2.0]))
    # step 1: s(0) = 1, s(3) = ½ -> Δ̄ = ([2,0] + ½·[0,4]) / 2 = [1,1]; v = [1,1]; x = [2,3]
    state = fedbuff.step(state, [A(1, 0, torch.tensor([2.0, 0.0])), A(1, 3, torch.tensor([0.0, 4.0]))], cfg)
    torch.testing.assert_close(state.weights, torch.tensor([2.0, 3.0]))
    # step 2: s(8) = ⅓ -> Δ̄ = ([1,-2] + [1,0]) / 2 = [1,-1]; v = ½·[1,1] + [1,-1] = [1.5,-0.5]; x = [3.5,2.5]
    state = fedbuff.step(state, [A(1, 8, torch.tensor([3.0, -6.0])), A(1, 0, torch.tensor([1.0, 0.0]))], cfg)
    torch.testing.assert_close(state.weights, torch.tensor([3.5, 2.5]))
    # step 3, sample weights 3 and 1: s(1) = 1/√2 -> Δ̄ = (3·[1,0] + [0,4]) / 4 = [0.75,1];
    # v = ½·[1.5,-0.5] + [0.75,1] = [1.5,0.75]; x = [5,3.25]
    arrivals = [A(3, 1, torch.tensor([math.sqrt(2), 0.0])), A(1, 0, torch.tensor([0.0, 4.0]))]
    state = fedbuff.step(state, arrivals, cfg)
    torch.testing.assert_close(state.weights, torch.tensor([5.0, 3.25]))
    torch.testing.assert_close(state.opt_state["v"], torch.tensor([1.5, 0.75]))
    assert state.round == 3


def test_fedasync_three_server_steps_by_hand():
    """x ← (1 − α·s(τ))·x + α·s(τ)·x_client, α = ½."""
    poly = StrategyConfig(async_alpha=0.5, staleness="polynomial", staleness_a=0.5)
    hinge = replace(poly, staleness="hinge", staleness_a=1.0, staleness_b=1.0)
    state = ServerState(torch.tensor([0.0, 4.0]))
    state = fedasync.step(state, torch.tensor([2.0, 0.0]), 0, poly)  # α_t = ½: [1, 2]
    torch.testing.assert_close(state.weights, torch.tensor([1.0, 2.0]))
    state = fedasync.step(state, torch.tensor([5.0, 6.0]), 3, poly)  # α_t = ½·½: ¾·[1,2] + ¼·[5,6]
    torch.testing.assert_close(state.weights, torch.tensor([2.0, 3.0]))
    state = fedasync.step(state, torch.tensor([8.0, -3.0]), 3, hinge)  # s = 1/(1·2+1): α_t = ⅙
    torch.testing.assert_close(state.weights, torch.tensor([3.0, 2.0]))  # ⅚·[2,3] + ⅙·[8,-3]
    assert state.round == 3 and state.opt_state == {}


def test_virtual_clock_orders_arrivals_and_hands_a_client_one_task_per_version(tmp_path):
    cfg = config.load(None, {"federation.num_clients": 3, "federation.mode": "fedbuff",
                             "federation.concurrency": 2, "federation.buffer_size": 1})
    steps = {0: 3, 1: 1, 2: 2}
    clock, draws = vclock.Clock(), vclock.Draws.of(cfg)
    first = clock.fill(draws, 0, steps.get)
    assert len(first) == 2 and len({t.cid for t in first}) == 2
    assert all(t.finish == steps[t.cid] and t.version == 0 for t in first)  # speed 1
    a = clock.pop()
    assert (a.finish, a.cid) == min((t.finish, t.cid) for t in first) and clock.now == a.finish
    (b,) = clock.fill(draws, 0, steps.get)  # only the client that has no task from version 0
    assert {b.cid} == {0, 1, 2} - {t.cid for t in first} and b.start == a.finish
    assert clock.fill(draws, 0, steps.get) == []  # the third slot... there is none: concurrency 2
    clock.pop()
    assert clock.fill(draws, 0, steps.get) == []  # every idle client already trained from version 0
    clock.new_version()
    (c,) = clock.fill(draws, 1, steps.get)
    assert c.version == 1 and c.dispatch == 3 and c.staleness(2) == 0 and b.staleness(2) == 1
    again = vclock.Clock.from_dict(json.loads(json.dumps(clock.to_dict())))
    assert again == clock


def test_fedbuff_with_a_full_buffer_is_synchronous_fedavg(tiny_cfg):
    """K = concurrency = all clients, s constant: every version trains every client from it with
    the round's seed, and the buffer's mean is FedAvg's."""
    sync = runner.run(tiny_cfg(name="sync"), progress=False)
    over = {"federation.mode": "fedbuff", "strategy.staleness": "constant"}
    buff = runner.run(tiny_cfg(name="buff", **over), progress=False)
    torch.testing.assert_close(buff.state.weights, sync.state.weights, rtol=0, atol=1e-6)
    assert list(buff.rounds["aggregated"]) == [6, 6] and list(buff.rounds["staleness_max"]) == [0, 0]
    cols = ["round", "client_id", "loss", "steps"]
    a = sync.clients[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = buff.clients[cols].sort_values(cols[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, atol=1e-6, rtol=0)


def test_fedbuff_run_records_staleness_and_virtual_time(tiny_cfg):
    res = runner.run(tiny_cfg(name="buff", **ASYNC), progress=False)
    r, c = res.rounds, res.clients
    assert list(r["mode"]) == ["fedbuff"] * 4 and list(r["aggregated"]) == [2] * 4
    assert r["virtual_s"].is_monotonic_increasing and (r["staleness_max"] > 0).any()
    by_step = c.groupby("round")["staleness"]
    assert list(by_step.max()) == list(r["staleness_max"])
    assert by_step.mean().tolist() == pytest.approx(r["staleness_mean"].tolist())
    assert c["sim_s"].tolist() == pytest.approx((c["speed"] * c["steps"]).tolist())  # speed × steps


def test_fedasync_applies_one_update_per_step(tiny_cfg):
    res = runner.run(tiny_cfg(name="fa", **{**ASYNC, "federation.mode": "fedasync",
                                            "federation.buffer_size": None}), progress=False)
    assert list(res.rounds["aggregated"]) == [1] * 4 and torch.isfinite(res.state.weights).all()
    assert list(res.clients["round"]) == [1, 2, 3, 4]


def test_async_resume_equals_uninterrupted(tiny_cfg):
    full = runner.run(tiny_cfg(name="full", **ASYNC), progress=False)
    part = tiny_cfg(name="part", **{**ASYNC, "federation.rounds": 2})
    runner.run(part, progress=False)
    saved, _ = checkpoint.load(part.run_dir)
    assert saved.extra["async"]["clock"]["inflight"]  # the clients in flight are server state
    resumed = runner.run(config.replace(part, **{"federation.rounds": 4}), resume=True, progress=False)
    torch.testing.assert_close(resumed.state.weights, full.state.weights, rtol=0, atol=0)
    cols = ["round", "virtual_s", "staleness_mean", "train_loss"]
    pd.testing.assert_frame_equal(resumed.rounds[cols], full.rounds[cols])


@pytest.mark.parametrize("clock", ["virtual", "wall"])
def test_async_divergence_stops_with_the_last_finite_state(tiny_cfg, monkeypatch, clock):
    def step(state, arrivals, strategy):
        nxt = fedbuff.server_step(state, fedbuff.buffered_mean(arrivals, strategy), strategy)
        return nxt if state.round < 2 else replace(nxt, weights=nxt.weights * float("nan"))
    monkeypatch.setattr(fedbuff, "step", step)
    cfg = tiny_cfg(name="div", **ASYNC, **{"federation.clock": clock})
    res = runner.run(cfg, progress=False)
    assert res.summary["diverged"] and "diverged at server step 3" in res.summary["stopped"]
    saved, _ = checkpoint.load(cfg.run_dir)
    assert saved.round == 2 and torch.isfinite(saved.weights).all()


def test_dpsgd_spending_survives_an_async_resume(tiny_cfg):
    """DP-SGD is per client, so it works unchanged; the tasks trained before a checkpoint (in
    flight, not yet applied) have their spending in it, so a resume accounts as a whole run."""
    over = {**ASYNC, "privacy.mode": "sample", "privacy.noise_multiplier": 0.8, "federation.rounds": 3}
    full = runner.run(tiny_cfg(name="dp", **over), progress=False)
    part = tiny_cfg(name="part", **{**over, "federation.rounds": 2})
    runner.run(part, progress=False)
    resumed = runner.run(config.replace(part, **{"federation.rounds": 3}), resume=True, progress=False)
    assert resumed.state.extra["dp_sgd"] == full.state.extra["dp_sgd"]
    torch.testing.assert_close(resumed.state.weights, full.state.weights, rtol=0, atol=0)
    eps = full.rounds["eps_max"].tolist()
    assert 0 < eps[0] <= eps[1] <= eps[2]


@pytest.mark.parametrize(("over", "msg"), [
    ({"federation.mode": "fedasync", "privacy.mode": "client", "privacy.noise_multiplier": 1.0},
     "privacy.mode: client-level DP has no accountant for fedasync's sampling"),
    ({"federation.mode": "fedbuff", "federation.concurrency": 2, "federation.buffer_size": 3},
     "federation.buffer_size: is 3 but only 2 clients train at once"),
    ({"federation.mode": "fedbuff", "federation.concurrency": 9}, "federation.concurrency: is 9 but"),
    ({"federation.mode": "fedasync", "federation.buffer_size": 2}, "fedasync applies every update"),
    ({"federation.mode": "fedbuff", "participation.deadline_s": 3.0}, "synchronous-round notions"),
    ({"federation.mode": "fedasync", "participation.deadline_steps": 3.0}, "synchronous-round notions"),
    ({"participation.deadline_s": 3.0, "participation.deadline_steps": 3.0}, "give one deadline"),
    ({"federation.clock": "wall"}, "federation.clock"),
])
def test_async_config_refusals(over, msg):
    with pytest.raises(config.ConfigError, match=msg.replace("(", r"\(")):
        config.load(None, over)


ASYNC_2 = {**ASYNC, "strategy.algorithm": "fedadam", "strategy.server_lr": 0.01, "federation.rounds": 3}


@pytest.mark.mpi
@pytest.mark.two_ranks(two=ASYNC_2)
def test_async_two_ranks_equal_one(tmp_path, tiny_cfg, two_ranks):
    over = ASYNC_2
    one = runner.run(tiny_cfg(name="one", **over), progress=False)
    two_ranks("two")
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(two["weights"], one.state.weights, rtol=0, atol=1e-5)
    ranks = pd.read_csv(tmp_path / "two" / "clients.csv")["rank"]
    assert set(ranks) == {0, 1}  # both ranks trained


def test_virtual_time_of_a_sync_round_is_its_slowest_client(tiny_cfg):
    from fedlib.lab import virtual_time

    cfg = tiny_cfg(name="s", **{"participation.speed": "uniform", "federation.rounds": 2})
    res = runner.run(cfg, progress=False)
    c = res.clients
    slowest = [max(c[c["round"] == r]["speed"]) * 3 for r in (1, 2)]  # 3 local steps each
    curve = virtual_time.curve(cfg.run_dir)
    assert curve["virtual_s"].tolist() == pytest.approx([slowest[0], slowest[0] + slowest[1]])
    assert curve["updates"].tolist() == [6, 12]
    assert virtual_time.time_to(curve, 2.0) == math.inf
    assert virtual_time.time_to(curve, 0.0) == pytest.approx(slowest[0])


def test_virtual_time_of_a_round_with_a_late_client_is_its_deadline(tmp_path):
    """By hand: round 1 keeps speeds 1 and 2 at 3 steps (lasts 6); round 2 keeps 1.5 x 3 = 4.5,
    its other client (4 x 3 = 12) is late for deadline_steps 5, so it lasts 5; round 3 loses
    both (late, dropped): 5 again."""
    from fedlib.lab import virtual_time

    cfg = config.load(None, {"participation.deadline_steps": 5.0})
    (tmp_path / "config.yaml").write_text("# a header comment, as provenance writes\n" + config.dump(cfg))
    pd.DataFrame({"round": [1, 2, 3], "aggregated": [2, 1, 0], "accuracy": [0.5, 0.6, 0.6]}).to_csv(
        tmp_path / "rounds.csv", index=False)
    pd.DataFrame({"round": [1, 1, 2, 2, 3, 3], "speed": [1.0, 2.0, 1.5, 4.0, 9.0, 1.0], "steps": [3] * 6,
                  "outcome": ["ok", "ok", "ok", "late", "late", "dropped"]}).to_csv(
        tmp_path / "clients.csv", index=False)
    curve = virtual_time.curve(tmp_path)
    assert curve["virtual_s"].tolist() == pytest.approx([6.0, 11.0, 16.0])
    assert curve["updates"].tolist() == [2, 3, 3]
