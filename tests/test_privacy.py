"""Differential privacy: clipping bound, noise scale, Opacus accountant known answer, budget
stop, DP-SGD accountant history across resume and ranks."""

import json

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedlib import checkpoint, runner
from fedlib.flat import FlatParams
from fedlib.privacy import accounting
from fedlib.privacy.client_level import add_noise_, clip_
from tests.conftest import mpiexec, tiny_overrides


def test_clip_bounds_every_update():
    model = torch.nn.Sequential(torch.nn.Linear(20, 10), torch.nn.Linear(10, 3))
    flat = FlatParams(model)
    base = flat.get()
    gen = torch.Generator().manual_seed(0)
    for scale in (1e-3, 0.1, 10.0, 1e3):
        flat.set(base + scale * torch.randn(flat.numel, generator=gen))
        before = float((flat.get() - base).norm())
        old = clip_(flat, base, c=1.0)
        after = float((flat.get() - base).norm())
        assert old == pytest.approx(before, rel=1e-5)
        assert after <= 1.0 + 1e-5
        if before <= 1.0:
            assert after == pytest.approx(before, rel=1e-5)  # small updates untouched


def test_noise_std_on_zero_update_is_sigma_c_over_m():
    numel, sigma, c, m = 200_000, 1.3, 0.5, 8
    summed = torch.zeros(numel + 2)
    add_noise_(summed, numel, sigma * c, m, torch.Generator().manual_seed(1))
    avg = summed[:numel] / summed[-2]
    assert float(avg.std()) == pytest.approx(sigma * c / m, rel=0.01)
    assert abs(float(avg.mean())) < 4 * sigma * c / m / numel**0.5
    again = torch.zeros(numel + 2)
    add_noise_(again, numel, sigma * c, m, torch.Generator().manual_seed(1))
    assert torch.equal(summed, again)  # every rank draws the same noise


def test_accountant_known_answer():
    ref = RDPAccountant()
    ref.history = [(1.0, 0.01, 10_000)]
    assert accounting.epsilon([(1.0, 0.01, 10_000)], 1e-5) == ref.get_epsilon(delta=1e-5)
    split = accounting.merge(accounting.merge([], 1.0, 0.01, 4_000), 1.0, 0.01, 6_000)
    assert split == [[1.0, 0.01, 10_000]]
    sigma = accounting.noise_for(8.0, 1e-5, 0.01, 10_000)
    assert accounting.epsilon([(sigma, 0.01, 10_000)], 1e-5) <= 8.0


def test_client_level_reports_epsilon_and_stops_at_budget(tiny_cfg):
    cfg = tiny_cfg(**{"privacy.mode": "client", "privacy.noise_multiplier": 1.0, "privacy.clip": 0.1,
                      "federation.rounds": 5, "federation.clients_per_round": 3})
    eps = [accounting.epsilon([(1.0, 0.5, r)], 1e-5) for r in range(1, 6)]
    budget = (eps[1] + eps[2]) / 2  # allows 2 rounds, not 3
    res = runner.run(cfg.replace(**{"privacy.epsilon_budget": budget}), progress=False)
    assert res.state.round == 2 and "privacy budget" in res.summary["stopped"]
    assert res.rounds["epsilon"].tolist() == pytest.approx(eps[:2])
    state, _ = checkpoint.load(cfg.run_dir)
    assert state.round == 2


def _sample_cfg(**extra):
    return {"privacy.mode": "sample", "privacy.noise_multiplier": 0.8, "federation.num_clients": 4,
            "federation.clients_per_round": 3, "federation.rounds": 3, **extra}


def test_dpsgd_history_survives_resume(tiny_cfg):
    full = runner.run(tiny_cfg(name="full", **_sample_cfg()), progress=False)
    part = runner.run(tiny_cfg(name="part", **_sample_cfg(**{"federation.rounds": 2})), progress=False)
    resumed = runner.run(tiny_cfg(name="part", **_sample_cfg()), resume=True, progress=False)
    assert resumed.state.extra["dp_sgd"] == full.state.extra["dp_sgd"]
    assert part.state.extra["dp_sgd"] != full.state.extra["dp_sgd"]
    torch.testing.assert_close(resumed.state.weights, full.state.weights, rtol=0, atol=1e-5)
    hist = full.state.extra["dp_sgd"]
    steps = sum(h[2] for c in hist for h in hist[c])
    assert steps == 3 * 3 * 3  # 3 rounds x 3 clients x 3 local steps
    eps = full.rounds["eps_max"]
    assert eps.notna().all() and (eps > 0).all()
    assert (full.rounds["eps_mean"] <= full.rounds["eps_max"]).all()


@pytest.mark.mpi
def test_dpsgd_same_on_two_ranks(tmp_path, tiny_cfg):
    one = runner.run(tiny_cfg(name="one", **_sample_cfg()), progress=False)
    over = tiny_overrides(tmp_path, name="two", **_sample_cfg())
    mpiexec(2, ["-m", "fedlib", "run", "--quiet",
                *[a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]])
    blob = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert blob["extra"]["dp_sgd"] == one.state.extra["dp_sgd"]
    torch.testing.assert_close(blob["weights"], one.state.weights, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_dpsgd_minilm_reports_finite_epsilon(tiny_cfg):
    res = runner.run(tiny_cfg(**_sample_cfg(**{
        "model.name": "minilm", "model.overrides": {}, "privacy.noise_multiplier": None,
        "privacy.target_epsilon": 8.0, "federation.rounds": 1, "client.local_steps": 2,
        "data.max_train_samples": 96, "data.max_eval_samples": 32})), progress=False)
    eps = res.rounds["eps_max"].iloc[-1]
    assert 0 < eps <= 8.0 and torch.isfinite(res.state.weights).all()
