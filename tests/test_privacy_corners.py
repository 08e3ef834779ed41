"""Privacy corner cases (issue 19 §5): a diverged round is still a release, an empty Poisson
batch is a noise-only DP-SGD step, lossy payloads, δ, silently ignored keys."""

import json
from dataclasses import replace

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedlib import checkpoint, runner
from fedlib import round as rounds
from fedlib.strategies import server_step


def _nan_from(monkeypatch, bad_round: int, factor: float = float("nan")) -> None:
    """The server step of round `bad_round` (and later) returns its weights times `factor`: NaN
    (non-finite weights) or huge (finite weights whose evaluation loss is not finite)."""
    def step(state, delta, strategy):
        nxt = server_step(state, delta, strategy)
        return nxt if state.round + 1 < bad_round else replace(nxt, weights=nxt.weights * factor)
    monkeypatch.setattr(rounds, "server_step", step)


def test_a_diverged_round_is_charged_to_the_accountant(tiny_cfg, monkeypatch):
    """Round 3 diverges: its noised sum was released (and scored), so ε covers 3 rounds, as
    Opacus's RDPAccountant stepped by hand 3 times at (σ, q) says, while the kept state is round 2."""
    cfg = tiny_cfg(**{"privacy.mode": "client", "privacy.noise_multiplier": 1.0, "privacy.clip": 0.1,
                      "federation.num_clients": 6, "federation.clients_per_round": 3,
                      "federation.rounds": 4})
    _nan_from(monkeypatch, 3)
    res = runner.run(cfg, progress=False)
    acc = RDPAccountant()
    for _ in range(3):
        acc.step(noise_multiplier=1.0, sample_rate=0.5)
    true = acc.get_epsilon(delta=cfg.privacy.delta)
    assert res.state.round == 2 and res.state.extra["client_dp"] == [[1.0, 0.5, 3]]
    assert res.rounds["epsilon"].iloc[-1] == pytest.approx(true)
    assert res.summary["epsilon"] == pytest.approx(true)
    saved, _ = checkpoint.load(cfg.run_dir)  # a resume starts from the spending of 3 rounds
    assert saved.round == 2 and saved.extra["client_dp"] == [[1.0, 0.5, 3]]


def test_a_diverged_summary_reports_the_kept_state(tiny_cfg, monkeypatch):
    """Round 1 diverges: the summary's metrics are those of the kept state (round 0, the initial
    weights, scored at the end), the diverged round's sit apart under diverged_round."""
    cfg = tiny_cfg(**{"federation.rounds": 3})
    w0 = runner.Run.build(cfg, runner.comm_for(cfg)).flat.get()
    _nan_from(monkeypatch, 1, 1e30)
    res = runner.run(cfg, progress=False)
    assert "evaluation loss is nan" in res.summary["stopped"]
    ctx = runner.Run.build(cfg, runner.comm_for(cfg))
    loss, acc, f1 = ctx.evaluate(w0)
    s = json.loads((cfg.run_dir / "summary.json").read_text())
    assert s["rounds"] == 0 and s["diverged"]
    assert (s["eval_loss"], s["accuracy"], s["macro_f1"]) == pytest.approx((loss, acc, f1))
    row = res.rounds.iloc[-1]
    assert s["diverged_round"]["round"] == 1 and s["diverged_round"]["eval_loss"] is None
    assert s["diverged_round"]["accuracy"] == pytest.approx(row["accuracy"])
    assert row["accuracy"] != pytest.approx(acc)  # today's summary reported this one
    assert torch.equal(res.state.weights, w0)
