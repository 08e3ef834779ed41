"""One loop body (issue 29 §1): every loop — synchronous rounds, the virtual clock, the wall
clock — hands each new model version to the same steps, so for each of them: the model is
exported, the privacy budget stops the run before it is passed, a diverged step is charged to
the accountant, a checkpoint resumes equal and the rows match the checkpoint. A fourth loop
joins LOOPS and must pass the same."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from fedlib import config, runner, strategies
from fedlib.engine import rounds, wall
from fedlib.privacy import accounting
from fedlib.record import checkpoint, export
from fedlib.record.metrics import PHASES
from fedlib.strategies import fedbuff

ASYNC = {"federation.concurrency": 4, "federation.buffer_size": 2, "participation.speed": "lognormal",
         "participation.speed_sigma": 1.0}
LOOPS = {
    "sync": {"federation.clients_per_round": 3},
    "virtual": {"federation.mode": "fedbuff", **ASYNC},
    "wall": {"federation.mode": "fedbuff", "federation.clock": "wall", **ASYNC},
}
DP = {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0, "federation.rounds": 4}


def _cfg(tiny_cfg, loop: str, name: str, **extra: object) -> config.RunConfig:
    return tiny_cfg(name=name, **{**LOOPS[loop], **DP, **extra})


def _eps_max(state_extra: dict, delta: float) -> float:
    """ε of the most-spent client, from a state's DP-SGD histories (Opacus composes them)."""
    return max(accounting.epsilon(h, delta) for h in state_extra["dp_sgd"].values())


def _rows_match_checkpoint(cfg: config.RunConfig, last_row: int) -> strategies.ServerState:
    """rounds.csv ends at `last_row`, clients.csv holds no later row, and the last row's eps_max
    is the ε of the spending the checkpoint holds."""
    saved, _ = checkpoint.load(cfg.run_dir)
    rows, clients = pd.read_csv(cfg.run_dir / "rounds.csv"), pd.read_csv(cfg.run_dir / "clients.csv")
    assert rows["round"].tolist() == list(range(1, last_row + 1))
    assert clients["round"].max() == last_row
    if cfg.privacy.mode == "sample":
        assert rows["eps_max"].iloc[-1] == pytest.approx(_eps_max(saved.extra, cfg.privacy.delta), rel=1e-12)
    return saved


def _diverge_at(monkeypatch, loop: str, version: int) -> None:
    """The server step that makes `version` returns NaN weights (every loop's server step)."""
    if loop == "sync":
        def sync_step(state, delta, strategy):
            nxt = strategies.server_step(state, delta, strategy)
            return nxt if nxt.round < version else replace(nxt, weights=nxt.weights * float("nan"))
        monkeypatch.setattr(rounds, "server_step", sync_step)
        return
    real = fedbuff.step

    def async_step(state, arrivals, strategy):
        nxt = real(state, arrivals, strategy)
        return nxt if nxt.round < version else replace(nxt, weights=nxt.weights * float("nan"))
    monkeypatch.setattr(fedbuff, "step", async_step)


@pytest.fixture
def full(tiny_cfg, request):
    """The loop's uninterrupted 4-version DP-SGD run, checkpointed every version."""
    cfg = _cfg(tiny_cfg, request.param, "full", **{"federation.checkpoint_every": 1})
    return request.param, cfg, runner.run(cfg, progress=False)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_every_loop_exports_and_its_rows_match_the_checkpoint(tiny_cfg, loop):
    """Without DP (the wall clock refused it before): the model folder, rows up to the last
    version, the checkpoint holding it."""
    cfg = tiny_cfg(name="plain", **{**LOOPS[loop], "federation.rounds": 3})
    res = runner.run(cfg, progress=False)
    assert (cfg.run_dir / export.FOLDER / "config.json").is_file(), f"{loop}: no exported model"
    assert res.state.round == 3 and res.summary["stopped"] is None
    saved = _rows_match_checkpoint(cfg, 3)
    torch.testing.assert_close(saved.weights, res.state.weights, rtol=0, atol=0)
    phases = res.rounds[[f"{p}_s" for p in PHASES]].sum(axis=1)  # one helper fills the ten fields
    assert (res.rounds["round_s"] > 0).all()
    pd.testing.assert_series_equal(phases, res.rounds["round_s"], check_names=False, rtol=1e-9)


@pytest.mark.parametrize("full", list(LOOPS), indirect=True)
def test_every_loop_writes_the_dp_rows_its_checkpoint_holds(full):
    loop, cfg, res = full
    assert res.state.round == 4 and res.summary["stopped"] is None
    saved = _rows_match_checkpoint(cfg, 4)
    torch.testing.assert_close(saved.weights, res.state.weights, rtol=0, atol=0)


@pytest.mark.parametrize("full", list(LOOPS), indirect=True)
def test_every_loop_stops_before_the_budget_is_passed(full, tiny_cfg):
    """A budget between the first and the last version's eps_max of the unbudgeted run: the run
    stops early with the reason, and no row, summary or checkpoint is past the budget."""
    loop, _, res = full
    eps = res.rounds["eps_max"].tolist()
    assert eps[0] < eps[-1]
    budget = (eps[0] + eps[-1]) / 2
    cfg = _cfg(tiny_cfg, loop, "budget", **{"privacy.epsilon_budget": budget})
    out = runner.run(cfg, progress=False)
    assert "privacy budget" in (out.summary["stopped"] or ""), f"{loop}: ran past the budget"
    assert 1 <= out.state.round < 4
    assert max(out.rounds["eps_max"]) <= budget and out.summary["eps_max"] <= budget
    saved = _rows_match_checkpoint(cfg, out.state.round)
    assert saved.round == out.state.round and _eps_max(saved.extra, cfg.privacy.delta) <= budget


@pytest.mark.parametrize("full", list(LOOPS), indirect=True)
def test_every_loop_charges_a_diverged_step(full, tiny_cfg, monkeypatch):
    """Version 3 diverges: the checkpoint keeps version 2's weights but the spending of the
    uninterrupted run up to version 3 (its training happened and its result was scored)."""
    loop, _, res = full
    three = _cfg(tiny_cfg, loop, "three", **{"federation.rounds": 3})
    ref = runner.run(three, progress=False)
    _diverge_at(monkeypatch, loop, 3)
    cfg = _cfg(tiny_cfg, loop, "div")
    out = runner.run(cfg, progress=False)
    assert out.summary["diverged"] and out.state.round == 2
    saved = _rows_match_checkpoint(cfg, 3)
    assert saved.round == 2 and torch.isfinite(saved.weights).all()
    assert saved.extra["dp_sgd"] == ref.state.extra["dp_sgd"], f"{loop}: the diverged step is not charged"
    assert out.summary["eps_max"] == pytest.approx(_eps_max(ref.state.extra, cfg.privacy.delta))


@pytest.mark.parametrize("full", list(LOOPS), indirect=True)
def test_every_loop_resumes_its_checkpoint_equal(full, tiny_cfg):
    """2 versions, then a resume to 4: synchronous rounds and the virtual clock end with the
    uninterrupted run (weights, spending); the wall clock, whose tasks in flight at the stop are
    lost by design, with the model its arrivals log replays."""
    loop, _, res = full
    part = _cfg(tiny_cfg, loop, "part", **{"federation.rounds": 2})
    runner.run(part, progress=False)
    resumed = runner.run(config.replace(part, **{"federation.rounds": 4}), resume=True, progress=False)
    assert resumed.state.round == 4
    _rows_match_checkpoint(part, 4)
    if loop == "wall":
        torch.testing.assert_close(wall.replay(part).weights, resumed.state.weights, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(resumed.state.weights, res.state.weights, rtol=0, atol=0)
        assert resumed.state.extra["dp_sgd"] == res.state.extra["dp_sgd"]
