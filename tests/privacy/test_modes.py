"""Privacy that holds in every mode (issue 29 §2): under privacy.secure_noise the samples the
ε relies on being secret come from OS entropy and client-level noise has Opacus's secure-mode
safeguard; DP-SGD's δ is bounded by its largest shard; DP keys that change nothing without DP
are refused; a seeded DP run says once that it is replayable; README's bf16 overshoot figures
are the two cases they are measured in. (The budget and the divergence charge on both
asynchronous clocks: tests/engine/test_body.py.)"""

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlib import config, runner, seeds
from fedlib.config import ConfigError
from fedlib.privacy import client_level
from fedlib.privacy.dpsgd import SampleLevel
from fedlib.record.residuals import ResidualStore
from fedlib.seeds import Stream
from fedlib.sim import participation
from fedlib.wire.aggregate import Aggregate
from fedlib.wire.codec import Codec
from fedlib.wire.comm import LocalComm
from tests.conftest import ROOT

SECURE_CLIENT = {"privacy.mode": "client", "privacy.noise_multiplier": 1.0, "privacy.secure_noise": True,
                 "federation.num_clients": 6, "federation.clients_per_round": 3}


def test_os_uniform_reads_the_os_entropy(monkeypatch):
    """53 bits of os.urandom per value: all-ones words give the largest double below 1."""
    monkeypatch.setattr(seeds.os, "urandom", lambda n: b"\xff" * n)
    assert seeds.os_uniform(3).tolist() == [1 - 2.0 ** -53] * 3
    monkeypatch.setattr(seeds.os, "urandom", lambda n: bytes(n))
    assert seeds.os_uniform(2).tolist() == [0.0, 0.0]


def test_secure_client_sampling_is_drawn_from_os_entropy(monkeypatch):
    """Client-level DP under secure_noise: client c joins when its OS uniform is below q = 1/2,
    whatever the run seed says; without secure_noise the seeded draw is unchanged."""
    u = np.array([0.9, 0.1, 0.6, 0.2, 0.4, 0.7])
    monkeypatch.setattr(seeds, "os_uniform", lambda n: u[:n])
    cfg = config.load(None, SECURE_CLIENT)
    assert participation.sample_clients(cfg, 1) == [1, 3, 4] == participation.sample_clients(cfg, 2)
    seeded = config.replace(cfg, **{"privacy.secure_noise": False})
    rng = seeds.rng(0, Stream.SAMPLING, 1)
    assert participation.sample_clients(seeded, 1) == [int(c) for c in np.flatnonzero(rng.random(6) < 0.5)]


def test_secure_dpsgd_poisson_batches_are_drawn_from_os_entropy(tiny_cfg, monkeypatch):
    """DP-SGD under secure_noise asks the OS for one uniform per example at every step (so the
    batch the amplification assumes secret is); all ones: every step's batch is empty."""
    calls = []
    monkeypatch.setattr(seeds, "os_uniform", lambda n: calls.append(n) or np.ones(n))
    cfg = tiny_cfg(**{"privacy.mode": "sample", "privacy.noise_multiplier": 1.0,
                      "privacy.secure_noise": True})
    ctx = runner.Context.build(cfg, LocalComm())
    mech = SampleLevel(cfg, [len(s) for s in ctx.shards], ctx.model)
    res = mech.train(ctx.model, ctx.shards[0], cfg.client, 7, 0)
    assert calls == [len(ctx.shards[0])] * cfg.client.local_steps
    assert np.isnan(res.loss)  # no step had an example: noise-only steps


def test_secure_client_noise_has_opacus_secure_mode_safeguard(monkeypatch):
    """The round's noise under secure_noise: one draw thrown away, then (z1+z2+z3+z4)/2 from the
    generator of the run's OS-entropy root (Holohan & Braghin 2021, as Opacus's secure mode)."""
    monkeypatch.setattr(seeds, "secure_entropy", lambda: 12345)
    cfg = config.load(None, SECURE_CLIENT)
    mech = client_level.ClientLevel(cfg, LocalComm())
    out = mech.finish(Aggregate.zeros(50), 3)
    gen = seeds.generator(12345, Stream.CLIENT_NOISE, 3)
    torch.randn(1, generator=gen)
    z = sum(torch.randn(50, generator=gen) for _ in range(4)) / 2
    torch.testing.assert_close(out.total, 1.0 * cfg.privacy.clip * z, rtol=0, atol=0)
    plain = client_level.gaussian(50, seeds.generator(12345, Stream.CLIENT_NOISE, 3))
    assert not torch.equal(z, plain)  # seeded noise stays the plain draw (replayable runs unchanged)


def test_dpsgd_delta_is_at_most_a_tenth_of_one_over_the_largest_shard():
    cfg = config.load(None, {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0, "privacy.delta": 0.5})
    with pytest.raises(ConfigError, match=r"^privacy.delta: is 0.5, but DP-SGD over client shards of up to "
                                          r"n=60 examples needs delta <= 1/\(10·n\) = 0.00167"):
        SampleLevel(cfg, [48, 60, 12], torch.nn.Linear(2, 2))
    ok = config.replace(cfg, **{"privacy.delta": 1 / 600})
    assert SampleLevel(ok, [48, 60, 12], torch.nn.Linear(2, 2)).p.delta == 1 / 600


@pytest.mark.parametrize(("key", "value"), [("secure_noise", True), ("delta", 1e-3), ("clip", 0.5),
                                            ("max_grad_norm", 2.0), ("accountant", "prv")])
def test_dp_keys_that_change_nothing_without_dp_are_refused(key, value):
    with pytest.raises(ConfigError, match=rf"^privacy.{key}: is .* but privacy.mode is none \(no DP\), so it "
                                          "would change nothing"):
        config.load(None, {f"privacy.{key}": value})
    assert config.load(None, {f"privacy.{key}": value, "privacy.mode": "sample",
                              "privacy.noise_multiplier": 1.0}).privacy.mode == "sample"


def test_a_seeded_dp_run_says_once_that_its_noise_is_replayable(tiny_cfg, capsys):
    over = {"privacy.mode": "sample", "privacy.noise_multiplier": 1.0, "federation.rounds": 2,
            "federation.eval_every": 0, "federation.export": False}
    runner.run(tiny_cfg(name="seeded", **over), progress=False)
    out = capsys.readouterr().out
    assert out.count("replay") == 1 and "seeded: privacy.secure_noise is false" in out
    runner.run(tiny_cfg(name="secure", **over, **{"privacy.secure_noise": True}), progress=False)
    assert "replay" not in capsys.readouterr().out


def test_readme_names_the_case_of_each_bf16_overshoot():
    """A clipped update of norm 0.99989 (1,000 values, the worst of 20 draws) decodes past C = 1
    in bf16: by plain rounding, and further with error feedback (its residual is added before
    rounding). README gives each figure with its case."""
    def worst(codec: Codec) -> float:
        gen, top = torch.Generator().manual_seed(0), 0.0
        for rnd in range(1, 21):
            u = torch.randn(1000, generator=gen)
            top = max(top, float(codec.encode(0, u / u.norm() * 0.99989, rnd=rnd).float().norm()))
        return top

    plain = worst(Codec("bf16"))
    with tempfile.TemporaryDirectory() as d:
        feedback = worst(Codec("bf16", ResidualStore(Path(d))))
    assert 1.0 < plain < feedback
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert re.search(rf"0\.99989 → {plain:.5f} by plain rounding", readme), plain
    assert re.search(rf"→ {feedback:.5f} with error feedback", readme), feedback
    assert "1.00376" not in readme
