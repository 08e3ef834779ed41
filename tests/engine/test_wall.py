"""The wall clock (federation.clock: wall): config rules, one process serving and training in
turn, a real two-rank run with emulated stragglers, replay from arrivals.csv, resume and
divergence. The strategy math is the virtual clock's, tested by hand in tests/engine/test_virtual.py."""

import os
import shutil
import signal

import pandas as pd
import pytest
import torch

from fedlib import cli, config, runner
from fedlib.engine import stop, wall
from fedlib.record import checkpoint
from fedlib.sim import vclock
from fedlib.strategies import fedbuff
from tests.conftest import tiny_overrides

WALL = {"federation.mode": "fedbuff", "federation.clock": "wall", "federation.concurrency": 4,
        "federation.buffer_size": 2, "federation.rounds": 4}


@pytest.mark.parametrize(("over", "msg"), [
    ({"federation.clock": "wall"}, "federation.clock: wall is the asynchronous server's clock"),
    ({"federation.mode": "fedbuff", "participation.emulate_speed": True},
     "participation.emulate_speed: sleeps"),
    ({**WALL, "federation.backend": "torch"}, "federation.backend: federation.clock: wall sends"),
    ({**WALL, "privacy.mode": "client", "privacy.noise_multiplier": 1.0},  # DP-SGD runs: test_body.py
     "privacy.mode: client-level DP has no accountant"),
])
def test_wall_config_refusals(over, msg):
    with pytest.raises(config.ConfigError, match=msg):
        config.load(None, over)


def test_wall_config_accepts_an_async_mode_with_emulated_speed():
    cfg = config.load(None, {**WALL, "federation.mode": "fedasync", "federation.buffer_size": None,
                             "participation.emulate_speed": True})
    assert cfg.federation.clock == "wall" and cfg.participation.emulate_speed


def test_wall_dispatch_draws_the_virtual_clocks_clients():
    """The same (seed, dispatch index) draw among the same free clients: the virtual clock's
    first tasks and a busy version's refusal are the wall dispatcher's."""
    cfg = config.load(None, {**WALL, "federation.num_clients": 6, "seed": 3})
    draws = vclock.Draws.of(cfg)
    virtual = vclock.Clock().fill(draws, 0, lambda c: 1)
    disp, busy = wall.Dispatcher(), set[int]()
    for t in virtual:
        task = disp.next(draws, 0, busy)
        assert task is not None and (task.dispatch, task.cid, task.version) == (t.dispatch, t.cid, t.version)
        busy.add(task.cid)
    assert disp.next(draws, 0, busy) is not None  # two clients left for version 0...
    assert disp.next(draws, 0, busy) is not None and disp.next(draws, 0, busy) is None  # ...then none


def test_wall_fedbuff_with_a_full_buffer_is_synchronous_fedavg(tiny_cfg):
    """K = concurrency = all clients, s constant: each version trains every client from it with
    the round's seed, as a synchronous FedAvg round does (the virtual clock's equivalence)."""
    sync = runner.run(tiny_cfg(name="sync", **{"federation.export": False}), progress=False)
    walled = runner.run(tiny_cfg(name="wall", **{"federation.mode": "fedbuff", "federation.clock": "wall",
                                                 "strategy.staleness": "constant"}), progress=False)
    torch.testing.assert_close(walled.state.weights, sync.state.weights, rtol=0, atol=1e-6)
    assert list(walled.rounds["aggregated"]) == [6, 6] and list(walled.rounds["staleness_max"]) == [0, 0]


def _check_log(run_dir, k: int, rounds: int) -> pd.DataFrame:
    """arrivals.csv holds k updates per server step, its staleness is the versions it missed, and
    clients.csv agrees with it row by row."""
    log = pd.read_csv(run_dir / "arrivals.csv")
    assert log.groupby("round").size().tolist() == [k] * rounds
    assert (log["staleness"] == log["round"] - 1 - log["from_version"]).all()
    assert log["dispatch"].is_unique and (log["end_s"] >= log["start_s"]).all()
    clients = pd.read_csv(run_dir / "clients.csv")
    assert clients[["round", "client_id", "staleness"]].values.tolist() == \
        log[["round", "client_id", "staleness"]].values.tolist()
    return log


def test_one_process_serves_trains_in_turn_resumes_and_replays(tiny_cfg):
    """One rank serves `concurrency` slots and trains each task when its update is due, so
    updates go stale; a run stopped at step 2 (its tasks in flight dropped) resumes with
    `--resume auto` to step 4; the replay of its log gives its model. A resumed wall run is not
    bit-equal to an uninterrupted one, and is not expected to be: the tasks in flight at the stop
    are handed out again, to clients drawn from later dispatch indices, from a later version."""
    part = tiny_cfg(name="w", **{**WALL, "federation.rounds": 2})
    first = runner.run(part, progress=False)
    assert list(first.rounds["aggregated"]) == [2, 2] and list(first.rounds["ranks"]) == [1, 1]
    saved, _ = checkpoint.load(part.run_dir)
    assert saved.round == 2 and saved.extra["wall"]["dispatched"] >= 4
    before = pd.read_csv(part.run_dir / "arrivals.csv")
    full = config.replace(part, **{"federation.rounds": 4})
    res = runner.run(full, resume="auto", progress=False)
    assert res.state.round == 4 and torch.isfinite(res.state.weights).all()
    assert res.rounds["round"].tolist() == [1, 2, 3, 4] and res.rounds["accuracy"].notna().all()
    log = _check_log(full.run_dir, 2, 4)
    pd.testing.assert_frame_equal(log[log["round"] <= 2], before)  # the resume kept the record
    assert log["staleness"].max() > 0 and res.rounds["staleness_max"].max() == log["staleness"].max()
    resumed_from = saved.extra["wall"]["dispatched"]  # tasks in flight at the stop are not in the log
    assert log["dispatch"].min() == 0 and log[log["round"] > 2]["dispatch"].min() >= resumed_from
    torch.testing.assert_close(wall.replay(full).weights, res.state.weights, rtol=0, atol=1e-6)


def test_replay_from_the_command_line_reads_only_the_run_folder(tiny_cfg, tmp_path, capsys):
    """`python -m fedlib replay RUN_DIR`: the folder moved elsewhere, its config.yaml and
    arrivals.csv redo the model, held against its checkpoint; a sync run is refused in one line."""
    cfg = tiny_cfg(name="w", **{**WALL, "federation.rounds": 2})
    runner.run(cfg, progress=False)
    moved = tmp_path / "elsewhere"
    shutil.copytree(cfg.run_dir, moved)
    shutil.rmtree(cfg.run_dir)
    assert cli.main(["replay", str(moved)]) == 0
    out = capsys.readouterr().out
    assert "replayed 2 server steps from arrivals.csv" in out and "(the same model)" in out
    sync = tiny_cfg(name="s", **{"federation.rounds": 1})
    runner.run(sync, progress=False)
    assert cli.main(["replay", str(sync.run_dir)]) == 2
    assert "a sync run on the virtual clock has no arrivals log" in capsys.readouterr().err


def test_sigterm_stops_after_the_step_and_resume_auto_finishes(tiny_cfg, monkeypatch):
    """SIGTERM while step 2 is made: the run keeps step 2 (checkpointed), stops with Preempted
    (exit 75 from the CLI), and `--resume auto` runs steps 3-4 to a model its log replays."""
    step = fedbuff.step

    def signalled(state, arrivals, strategy):
        if state.round == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(state, arrivals, strategy)
    monkeypatch.setattr(fedbuff, "step", signalled)
    cfg = tiny_cfg(name="w", **WALL)
    with pytest.raises(stop.Preempted, match="stopped by SIGTERM; the checkpoint .* keeps round 2"):
        runner.run(cfg, progress=False)
    assert checkpoint.load(cfg.run_dir)[0].round == 2
    monkeypatch.setattr(fedbuff, "step", step)
    res = runner.run(cfg, resume="auto", progress=False)
    assert res.rounds["round"].tolist() == [1, 2, 3, 4] and not res.summary["diverged"]
    _check_log(cfg.run_dir, 2, 4)
    torch.testing.assert_close(wall.replay(cfg).weights, res.state.weights, rtol=0, atol=1e-6)


def test_replay_refuses_a_log_with_a_missing_version(tiny_cfg):
    cfg = tiny_cfg(name="w", **{**WALL, "federation.rounds": 2})
    runner.run(cfg, progress=False)
    log = pd.read_csv(cfg.run_dir / "arrivals.csv")
    with pytest.raises(ValueError, match="version 2 follows version 0"):
        wall.replay(cfg, log[log["round"] == 2])


WALL_2 = {**WALL, "federation.concurrency": 2, "federation.rounds": 3, "participation.speed": "uniform",
          "participation.emulate_speed": True}


@pytest.mark.mpi
@pytest.mark.two_ranks(w2=WALL_2)
def test_two_ranks_wall_run_emulates_stragglers_and_replays(tmp_path, two_ranks):
    """Rank 0 serves, rank 1 trains: every update comes from rank 1, the server's waiting is its
    idle time, a client of speed f holds its rank (f - 1) x its compute, and the in-process
    replay of arrivals.csv gives the two-rank run's model."""
    over = WALL_2
    run_dir = two_ranks("w2")
    log = _check_log(run_dir, 2, 3)
    rounds, clients = pd.read_csv(run_dir / "rounds.csv"), pd.read_csv(run_dir / "clients.csv")
    assert set(log["rank"]) == {1} and list(rounds["ranks"]) == [2, 2, 2]
    assert (clients["idle_s"] >= 0).all() and clients["speed"].max() > 1
    f = clients["speed"].to_numpy()
    assert log["sleep_s"].to_numpy() == pytest.approx((f - 1) * log["compute_s"].to_numpy(), rel=1e-6)
    busy = log["compute_s"] + log["sleep_s"]  # f x compute: the task cannot arrive sooner...
    assert (log["end_s"] - log["start_s"] >= busy).all()
    assert (log["end_s"] - log["start_s"] <= 2 * busy + 1.0).all()  # ...nor much later (loose)
    assert rounds["wait_s"].sum() >= 0.5 * busy.sum()  # the server idles while its one worker trains
    cfg = config.load(None, tiny_overrides(tmp_path, name="w2", **over))
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]
    torch.testing.assert_close(wall.replay(cfg).weights, saved, rtol=0, atol=1e-6)
