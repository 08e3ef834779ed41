"""Differential privacy: clipping bound, noise scale, Opacus accountant known answer, budget
stop, DP-SGD accountant history across resume and ranks."""


import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import RDPAccountant

from fedlib import config, runner, seeds
from fedlib.config import ConfigError
from fedlib.privacy import accounting, client_level
from fedlib.privacy.client_level import clip_, noised
from fedlib.privacy.dpsgd import SampleLevel
from fedlib.record import checkpoint
from fedlib.sim import participation
from fedlib.strategies import ServerState
from fedlib.wire.aggregate import Aggregate
from fedlib.wire.comm import LocalComm
from fedlib.wire.flat import FlatParams


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
    zero = Aggregate.zeros(numel)
    summed = noised(zero, sigma * c, m, torch.Generator().manual_seed(1))
    assert summed.weight == m and summed.count == 0 and not zero.total.any()
    avg = summed.mean()
    assert float(avg.std()) == pytest.approx(sigma * c / m, rel=0.01)
    assert abs(float(avg.mean())) < 4 * sigma * c / m / numel**0.5
    again = noised(zero, sigma * c, m, torch.Generator().manual_seed(1))
    assert torch.equal(summed.buf, again.buf)  # every rank draws the same noise


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
    res = runner.run(config.replace(cfg, **{"privacy.epsilon_budget": budget}), progress=False)
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
    assert eps.is_monotonic_increasing  # over every client so far: a client's spending stays


@pytest.mark.mpi
@pytest.mark.two_ranks(two=_sample_cfg())
def test_dpsgd_same_on_two_ranks(tmp_path, tiny_cfg, two_ranks):
    one = runner.run(tiny_cfg(name="one", **_sample_cfg()), progress=False)
    two_ranks("two")
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


def _client_cfg(**extra):
    return {"privacy.mode": "client", "privacy.clip": 0.1, "federation.num_clients": 6,
            "federation.clients_per_round": 3, **extra}


def test_client_level_samples_poisson_with_rate_q(tiny_cfg):
    cfg = tiny_cfg(**_client_cfg(**{"privacy.noise_multiplier": 1.0, "federation.num_clients": 100,
                                    "federation.clients_per_round": 10}))
    counts = np.array([len(participation.sample_clients(cfg, r)) for r in range(1, 2001)])
    assert abs(counts.mean() - 10) < 0.25  # E = qN
    assert 7.5 < counts.var() < 10.5  # Binomial(N, q): Nq(1-q) = 9; fixed-size sampling gives 0
    plain = tiny_cfg(**{"federation.num_clients": 100, "federation.clients_per_round": 10})
    assert {len(participation.sample_clients(plain, r)) for r in range(1, 50)} == {10}


def test_empty_round_still_releases_the_noise(tiny_cfg):
    """A Poisson round with no client releases noise / m, counts as one accountant step, and
    does not crash."""
    over = _client_cfg(**{"privacy.noise_multiplier": 1.0, "federation.clients_per_round": 1,
                          "federation.rounds": 1})
    seed = next(s for s in range(200) if not participation.sample_clients(tiny_cfg(seed=s, **over), 1))
    cfg = tiny_cfg(seed=seed, **over)
    w0 = runner.Context.build(cfg, LocalComm()).flat.get()
    res = runner.run(cfg, progress=False)
    row = res.rounds.iloc[0]
    assert row["sampled"] == 0 and row["aggregated"] == 0 and not row["skipped"]
    noise = torch.randn(len(w0), generator=seeds.generator(seed, seeds.Stream.CLIENT_NOISE, 1))
    torch.testing.assert_close(res.state.weights, w0 + 1.0 * 0.1 * noise / 1.0, rtol=0, atol=1e-6)
    assert res.state.extra["client_dp"] == [[1.0, 1 / 6, 1]]
    assert row["epsilon"] == pytest.approx(accounting.epsilon([(1.0, 1 / 6, 1)], 1e-5))


def _epsilon_from_csv(rounds: pd.DataFrame, delta: float) -> list[float]:
    """Opacus, fed only what rounds.csv says each round used."""
    acc, out = RDPAccountant(), []
    for sigma, q in zip(rounds["noise_multiplier"], rounds["sample_rate"], strict=True):
        acc.step(noise_multiplier=sigma, sample_rate=q)
        out.append(acc.get_epsilon(delta=delta))
    return out


def test_resume_to_more_rounds_spends_only_the_remaining_budget(tiny_cfg, monkeypatch):
    used = []
    real = client_level.noised
    monkeypatch.setattr(client_level, "noised",
                        lambda agg, std, *a: (used.append(std), real(agg, std, *a))[1])
    cfg = tiny_cfg(**_client_cfg(**{"privacy.target_epsilon": 8.0, "federation.rounds": 3}))
    runner.run(cfg, progress=False)
    res = runner.run(config.replace(cfg, **{"federation.rounds": 6}), resume=True, progress=False)
    rounds = pd.read_csv(cfg.run_dir / "rounds.csv")
    sigma3 = accounting.noise_for(8.0, 1e-5, 0.5, 3)
    assert rounds["noise_multiplier"].tolist()[:3] == [sigma3] * 3  # what the first run used
    assert rounds["noise_multiplier"].iloc[3] > sigma3
    assert used == pytest.approx((rounds["noise_multiplier"] * 0.1).tolist())  # the noise really added
    assert rounds["epsilon"].tolist() == pytest.approx(_epsilon_from_csv(rounds, 1e-5))
    assert 7.98 <= res.summary["epsilon"] <= 8.0  # not the 3-round plan stretched to 6 rounds
    assert accounting.epsilon([(sigma3, 0.5, 6)], 1e-5) > 9  # what keeping sigma3 would cost


def test_unchanged_resume_keeps_sigma_and_equals_uninterrupted(tiny_cfg, monkeypatch):
    over = _client_cfg(**{"privacy.target_epsilon": 8.0, "federation.rounds": 4})
    full = runner.run(tiny_cfg(name="full", **over), progress=False)
    part = tiny_cfg(name="part", **over)
    with monkeypatch.context() as m:  # interrupt the same 4-round run after round 2
        m.setattr(client_level.ClientLevel, "admit",
                  lambda self, st, rnd, fates: "stop" if rnd == 3 else None)
        runner.run(part, progress=False)
    resumed = runner.run(part, resume=True, progress=False)
    assert resumed.state.extra["client_dp"] == full.state.extra["client_dp"]
    assert full.state.extra["client_dp"] == [[accounting.noise_for(8.0, 1e-5, 0.5, 4), 0.5, 4]]
    torch.testing.assert_close(resumed.state.weights, full.state.weights, rtol=0, atol=1e-6)


def test_resume_refuses_when_the_budget_is_spent(tiny_cfg):
    cfg = tiny_cfg(**_client_cfg(**{"privacy.target_epsilon": 1.0, "federation.rounds": 4}))
    mech = client_level.ClientLevel(cfg, LocalComm())
    spent = ServerState(torch.zeros(1), 2, {}, {"client_dp": [[0.5, 0.5, 2]]})
    assert accounting.epsilon([(0.5, 0.5, 2)], 1e-5) > 1.0
    with pytest.raises(ConfigError, match="privacy.target_epsilon=1.0: the checkpoint's 2 rounds"):
        mech.plan(spent)
    with pytest.raises(ValueError, match="already spent"):
        accounting.noise_after([(0.5, 0.5, 2)], 1.0, 1e-5, 0.5, 2)


def test_noise_after_spends_the_remaining_budget():
    hist = [(1.0, 0.1, 50)]
    sigma = accounting.noise_after(hist, 8.0, 1e-5, 0.1, 50)
    assert 7.99 <= accounting.epsilon([*hist, (sigma, 0.1, 50)], 1e-5) <= 8.0
    assert accounting.noise_after([], 8.0, 1e-5, 0.1, 50) == accounting.noise_for(8.0, 1e-5, 0.1, 50)


def test_eps_max_counts_clients_that_sat_the_round_out():
    cfg = config.load(None, {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0,
                             "client.batch_size": 10})
    mech = SampleLevel(cfg, [100, 100], torch.nn.Linear(2, 2))
    # only client 1 trains this round (10 steps at q = 10/100)
    state = mech.spend(ServerState(torch.zeros(1), 1, {}, {"dp_sgd": {0: [[1.0, 0.1, 500]]}}), [(1, 10)])
    m = mech.metrics(state, 2)
    eps0 = accounting.epsilon([(1.0, 0.1, 500)], 1e-5)
    eps1 = accounting.epsilon([(1.0, 0.1, 10)], 1e-5)
    assert m["eps_max"] == pytest.approx(eps0)
    assert m["eps_mean"] == pytest.approx((eps0 + eps1) / 2)


@pytest.mark.parametrize("mode", ["client", "sample"])
def test_secure_noise_is_not_reproducible_seeded_noise_is(tiny_cfg, mode):
    over = (_client_cfg(**{"privacy.noise_multiplier": 1.0}) if mode == "client"
            else _sample_cfg())
    over = {**over, "federation.rounds": 1, "federation.eval_every": 0}
    seeded = [runner.run(tiny_cfg(name=f"s{i}", **over), progress=False).state.weights for i in range(2)]
    secure = [runner.run(tiny_cfg(name=f"x{i}", **over, **{"privacy.secure_noise": True}),
                         progress=False).state.weights for i in range(2)]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.equal(secure[0], secure[1])
    assert not torch.equal(secure[0], seeded[0])


CLIENT_DP_2 = _client_cfg(**{"privacy.noise_multiplier": 1.0, "federation.clients_per_round": 2,
                              "federation.rounds": 3})


@pytest.mark.mpi
@pytest.mark.two_ranks(two=CLIENT_DP_2)
def test_client_level_same_on_two_ranks(tmp_path, tiny_cfg, two_ranks):
    """Poisson sampling and the noise come from (seed, round): the ranks agree with one process."""
    over = CLIENT_DP_2
    one = runner.run(tiny_cfg(name="one", **over), progress=False)
    two_ranks("two")
    blob = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert blob["extra"]["client_dp"] == one.state.extra["client_dp"] == [[1.0, 1 / 3, 3]]
    torch.testing.assert_close(blob["weights"], one.state.weights, rtol=0, atol=1e-5)
    two = pd.read_csv(tmp_path / "two" / "rounds.csv")
    assert two["sampled"].tolist() == one.rounds["sampled"].tolist()


def test_dpsgd_resume_to_more_rounds_keeps_every_client_within_target(tiny_cfg):
    over = {"privacy.noise_multiplier": None, "privacy.target_epsilon": 8.0, "federation.rounds": 2}
    cfg = tiny_cfg(**_sample_cfg(**over))
    first = runner.run(cfg, progress=False)
    assert first.rounds["eps_max"].iloc[-1] <= 8.0
    res = runner.run(config.replace(cfg, **{"federation.rounds": 4}), resume=True, progress=False)
    # planning the last 2 rounds as if all 4 were fresh spends 9.18 for a client in every round
    assert 7.5 < res.rounds["eps_max"].iloc[-1] <= 8.0
    hist = res.state.extra["dp_sgd"]
    assert all(h[0][0] < h[-1][0] for h in hist.values() if len(h) > 1)  # more noise after the resume
