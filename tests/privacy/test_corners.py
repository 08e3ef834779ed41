"""Privacy corner cases (issue 19 §5): a diverged round is still a release, an empty Poisson
batch is a noise-only DP-SGD step, lossy payloads, δ, silently ignored keys."""

import json
from dataclasses import replace

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedlib import config, runner, seeds
from fedlib.config import ConfigError
from fedlib.engine import rounds
from fedlib.lab import sweep
from fedlib.privacy.dpsgd import SampleLevel
from fedlib.record import checkpoint
from fedlib.seeds import Stream
from fedlib.strategies import ServerState, server_step
from fedlib.wire.codec import Codec
from fedlib.wire.comm import LocalComm


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
    # the summary names the δ of its ε, and how much of the eval split was scored
    whole = runner.Context.build(config.replace(cfg, **{"data.max_eval_samples": None}), LocalComm())
    assert res.summary["delta"] == 1e-5 and res.summary["eval_examples"] == 64
    assert res.summary["eval_split_size"] == len(whole.data.eval) > 64


def test_a_diverged_summary_reports_the_kept_state(tiny_cfg, monkeypatch):
    """Round 1 diverges: the summary's metrics are those of the kept state (round 0, the initial
    weights, scored at the end), the diverged round's sit apart under diverged_round."""
    cfg = tiny_cfg(**{"federation.rounds": 3})
    w0 = runner.Context.build(cfg, runner.comm_for(cfg)).flat.get()
    _nan_from(monkeypatch, 1, 1e30)
    res = runner.run(cfg, progress=False)
    assert "evaluation loss is nan" in res.summary["stopped"]
    ctx = runner.Context.build(cfg, runner.comm_for(cfg))
    loss, acc, f1 = ctx.evaluate(w0)
    s = json.loads((cfg.run_dir / "summary.json").read_text())
    assert s["rounds"] == 0 and s["diverged"]
    assert (s["eval_loss"], s["accuracy"], s["macro_f1"]) == pytest.approx((loss, acc, f1))
    row = res.rounds.iloc[-1]
    assert s["diverged_round"]["round"] == 1 and s["diverged_round"]["eval_loss"] is None
    assert s["diverged_round"]["accuracy"] == pytest.approx(row["accuracy"])
    assert row["accuracy"] != pytest.approx(acc)  # today's summary reported this one
    assert torch.equal(res.state.weights, w0)
    assert sweep.summarize(cfg, res, {})["diverged_round"] == 1  # a sweep's row keeps it too


def test_dpsgd_empty_poisson_batch_is_a_noise_only_step(tiny_cfg):
    """Shards of 3 at batch 1 (q = 1/3): a step whose Poisson batch is empty still moves the
    weights by the noise alone, -lr·σC·z / B with z Opacus's draw from the SAMPLE_NOISE stream
    (before, the step was skipped yet counted by the accountant)."""
    sigma, clip = 1.3, 0.7
    cfg = tiny_cfg(**{"privacy.mode": "sample", "privacy.noise_multiplier": sigma,
                      "privacy.max_grad_norm": clip, "federation.num_clients": 4,
                      "data.max_train_samples": 12, "client.batch_size": 1, "client.local_steps": 1,
                      "client.optimizer": "sgd", "client.lr": 1.0, "client.max_grad_norm": None})
    ctx = runner.Context.build(cfg, LocalComm())
    assert len(ctx.shards[0]) == 3
    seed = next(s for s in range(1000)
                if not (torch.rand(3, generator=seeds.generator(s, Stream.BATCHES)) < 1 / 3).any())
    mech = SampleLevel(cfg, [len(s) for s in ctx.shards], ctx.model)
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    res = mech.train(ctx.model, ctx.shards[0], cfg.client, seed, 0)
    noise = torch.Generator().manual_seed(seeds.seed(seed, Stream.SAMPLE_NOISE))
    for p, b in zip(params, before, strict=True):
        z = torch.normal(0, sigma * clip, size=p.shape, generator=noise)
        torch.testing.assert_close(p.detach(), b - 1.0 * z / 1, rtol=0, atol=1e-6)
    assert res.steps == 1
    spent = mech.spend(ServerState(torch.zeros(1)), [(0, res.steps)]).extra["dp_sgd"]
    assert spent == {0: [[sigma, 1 / 3, 1]]}


def test_client_level_dp_refuses_a_16_bit_payload(tmp_path):
    """Rounding to bf16 after the clip breaks the bound the noise is calibrated to (seen here: a
    clipped update of norm 0.99989 decodes past C = 1), so the configuration is refused."""
    gen, worst = torch.Generator().manual_seed(0), 0.0
    for rnd in range(1, 21):
        u = torch.randn(1000, generator=gen)
        u = u / u.norm() * 0.99989
        worst = max(worst, float(Codec("bf16").encode(0, u.clone(), rnd=rnd).float().norm()))
    assert worst > 1.0
    dp = {"privacy.mode": "client", "privacy.noise_multiplier": 1.0}
    for dtype in ("bf16", "fp16"):
        with pytest.raises(ConfigError, match=r"^federation.payload_dtype: is .*mode=client.*use fp32"):
            config.load(None, {**dp, "federation.payload_dtype": dtype})
    assert config.load(None, {**dp, "federation.payload_dtype": "fp32"}).federation.payload_dtype == "fp32"
    sample = config.load(None, {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0,
                                "federation.payload_dtype": "bf16"})  # post-processing of DP-SGD: fine
    assert sample.federation.payload_dtype == "bf16"


def test_client_level_delta_is_at_most_a_tenth_of_one_over_n():
    dp = {"privacy.mode": "client", "privacy.target_epsilon": 8.0, "federation.num_clients": 1000}
    with pytest.raises(ConfigError, match=r"^privacy.delta: is 0.001, .*num_clients=1000 .* = 0.0001"):
        config.load(None, {**dp, "privacy.delta": 1e-3})
    assert config.load(None, {**dp, "privacy.delta": 1e-4}).privacy.delta == 1e-4
    assert config.load(None, dp).privacy.delta == 1e-5  # the default fits up to 10,000 clients
    with pytest.raises(ConfigError, match="^privacy.delta"):
        config.load(None, {**dp, "federation.num_clients": 20_000})


@pytest.mark.parametrize("key", ["noise_multiplier", "target_epsilon", "epsilon_budget"])
def test_dp_keys_without_dp_are_refused(key):
    with pytest.raises(ConfigError, match=rf"^privacy.{key}: is set but privacy.mode is none"):
        config.load(None, {f"privacy.{key}": 1.0})


def test_dpsgd_epsilon_budget_stops_before_any_client_passes_it(tiny_cfg):
    """Before, privacy.epsilon_budget applied to client-level DP only: DP-SGD ran on past it
    with exit 0. 4 clients of 48 examples at batch 8 (q = 1/6), 3 steps a round, every client
    every round: a budget between 2 and 3 rounds' ε (Opacus stepped by hand) stops after 2."""
    over = {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0, "federation.num_clients": 4,
            "federation.rounds": 5}
    acc, eps = RDPAccountant(), []
    for _ in range(3):
        for _ in range(3):
            acc.step(noise_multiplier=1.0, sample_rate=8 / 48)
        eps.append(acc.get_epsilon(delta=1e-5))
    res = runner.run(tiny_cfg(**over, **{"privacy.epsilon_budget": (eps[1] + eps[2]) / 2}), progress=False)
    assert res.state.round == 2 and "privacy budget: round 3" in res.summary["stopped"]
    assert res.rounds["eps_max"].tolist() == pytest.approx(eps[:2])
    assert res.summary["eps_max"] <= (eps[1] + eps[2]) / 2
