"""Dropout, stragglers, deadlines, non-finite updates and skipped rounds."""


from dataclasses import replace

import pandas as pd
import pytest
import torch

from fedlib import config, runner
from fedlib.sim import client, participation

DROPS = {"participation.dropout": 0.4, "participation.dropout_when": "mid",
         "participation.speed": "lognormal", "federation.num_clients": 8, "federation.rounds": 3}


def test_fates_seeded_per_client_not_per_call(tiny_cfg):
    cfg = tiny_cfg(**DROPS)
    fates = [participation.fates(cfg, r) for r in (1, 2, 3)]
    assert fates == [participation.fates(cfg, r) for r in (1, 2, 3)]
    drops = [f.drop for fs in fates for f in fs]
    assert "mid" in drops and "" in drops
    assert len({f.speed for fs in fates for f in fs}) > 1
    # one client's fate does not depend on who else is sampled
    assert participation.fate(cfg.participation, cfg.seed, 2, 5) == fates[1][5]


def test_fates_without_dropout_or_stragglers_draw_nothing(tiny_cfg, monkeypatch):
    """No dropout and constant speed: no per-client generator (pure overhead on every rank),
    and the same fates as the drawing path gives; a client that stays reports fraction 1.0."""
    cfg = tiny_cfg(**{"federation.num_clients": 8})
    monkeypatch.setattr(participation, "draws", lambda p: True)  # force the drawing path
    drawn = participation.fates(cfg, 2)
    monkeypatch.undo()

    def no_rng(*a, **k):
        raise AssertionError("a fate without dropout or stragglers drew a generator")

    monkeypatch.setattr(participation.seeds, "rng", no_rng)
    monkeypatch.setattr(participation, "sample_clients", lambda cfg, rnd: list(range(8)))
    assert participation.fates(cfg, 2) == drawn == [participation.Fate(c, "", 1.0, 1.0) for c in range(8)]


def test_staying_clients_report_full_step_fraction(tiny_cfg):
    fates = [f for r in (1, 2, 3) for f in participation.fates(tiny_cfg(**DROPS), r)]
    assert {f.step_fraction for f in fates if f.drop != "mid"} == {1.0}
    assert len({f.step_fraction for f in fates if f.drop == "mid"}) > 1


def test_dropout_rate_matches_probability(tiny_cfg):
    cfg = tiny_cfg(**{**DROPS, "federation.num_clients": 100})
    drops = [f.drop != "" for r in range(1, 21) for f in participation.fates(cfg, r)]
    assert abs(sum(drops) / len(drops) - 0.4) < 0.03


def test_dropped_and_late_clients_not_aggregated(tiny_cfg):
    res = runner.run(tiny_cfg(**DROPS, **{"participation.deadline_s": 0.05,
                                          "participation.speed_sigma": 1.5}), progress=False)
    c, r = res.clients, res.rounds
    assert ((c["outcome"] == "late") == ((c["sim_s"] > 0.05) & (c["outcome"] != "dropped"))).all()
    kept = c[c["outcome"] == "ok"].groupby("round").size().reindex(r["round"], fill_value=0)
    assert (r.set_index("round")["aggregated"] == kept).all()
    assert (r["dropped"] + r["aggregated"] + r["late"] + r["rejected"] == r["sampled"]).all()
    assert r["dropped"].sum() > 0
    mid = c[c["outcome"] == "dropped"]  # mid-training dropouts did part of their steps
    assert (mid["steps"] <= 3).all()


def test_virtual_deadline_judges_speed_times_steps():
    """Late when speed x local steps > deadline_steps, whatever the measured seconds; deadline_s
    judges the measured seconds."""
    steps_p = config.load(None, {"participation.deadline_steps": 9.0}).participation
    seconds_p = config.load(None, {"participation.deadline_s": 9.0}).participation
    f = participation.Fate(client=0, drop="", step_fraction=1.0, speed=2.5)
    assert participation.late(steps_p, f, sim_s=1e6, steps=4)  # 10 > 9
    assert not participation.late(steps_p, f, sim_s=1e6, steps=3)  # 7.5
    assert not participation.late(steps_p, replace(f, speed=3.0), sim_s=0.0, steps=3)  # 9 is in time
    assert participation.late(seconds_p, f, sim_s=9.5, steps=1)
    assert not participation.late(seconds_p, f, sim_s=8.0, steps=99)
    assert participation.outcome(f, True, True) == "late"
    assert participation.outcome(f, False, False) == "rejected"


def test_virtual_deadline_run_is_deterministic(tiny_cfg):
    over = {**DROPS, "participation.dropout": 0.0, "participation.speed_sigma": 1.0,
            "participation.deadline_steps": 4.0}
    a = runner.run(tiny_cfg(name="a", **over), progress=False)
    b = runner.run(tiny_cfg(name="b", **over), progress=False)
    c = a.clients
    assert ((c["outcome"] == "late") == (c["speed"] * c["steps"] > 4.0)).all()
    assert 0 < (c["outcome"] == "late").sum() < len(c)
    assert a.clients["outcome"].tolist() == b.clients["outcome"].tolist()
    torch.testing.assert_close(a.state.weights, b.state.weights, rtol=0, atol=0)


def _poison(monkeypatch, bad: set[int]):
    real = client.train

    def train(model, shard, cfg, seed, client_id, penalty=None):
        res = real(model, shard, cfg, seed, client_id, penalty)
        if client_id in bad:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).view(-1)[0] = float("nan")
        return res
    monkeypatch.setattr(client, "train", train)


def test_nan_update_rejected_and_counted(tiny_cfg, monkeypatch):
    _poison(monkeypatch, {1, 4})
    res = runner.run(tiny_cfg(), progress=False)
    assert res.rounds["rejected"].tolist() == [2, 2]
    assert res.rounds["aggregated"].tolist() == [4, 4]
    assert torch.isfinite(res.state.weights).all()


def test_round_skipped_below_min_clients(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(**{"participation.min_clients": 5})
    start = runner.Context.build(cfg, runner.make_comm("local")).flat.get()
    _poison(monkeypatch, {0, 1})
    res = runner.run(cfg, progress=False)
    assert res.rounds["skipped"].tolist() == [True, True] and res.state.round == 2
    torch.testing.assert_close(res.state.weights, start, rtol=0, atol=0)


def test_min_clients_above_sample_size_is_a_config_error(tiny_cfg):
    with pytest.raises(Exception, match="participation.min_clients"):
        tiny_cfg(**{"participation.min_clients": 7})


@pytest.mark.mpi
@pytest.mark.two_ranks(two=DROPS)
def test_dropout_identical_for_1_and_2_ranks(tmp_path, tiny_cfg, two_ranks):
    one = runner.run(tiny_cfg(name="one", **DROPS), progress=False)
    two_ranks("two")
    two = pd.read_csv(tmp_path / "two" / "clients.csv")
    cols = ["round", "client_id", "steps", "speed", "outcome"]
    key = ["round", "client_id"]
    pd.testing.assert_frame_equal(one.clients[cols].sort_values(key).reset_index(drop=True),
                                  two[cols].sort_values(key).reset_index(drop=True))
    w2 = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["weights"]
    torch.testing.assert_close(w2, one.state.weights, rtol=0, atol=1e-5)
