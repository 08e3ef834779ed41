"""Frozen prefixes and the feature cache: frozen means eval mode; a cached run is the uncached
run with the same frozen layers; a valid cache is never rebuilt."""

import pytest
import torch

from fedlib import config, runner
from fedlib.learn import data, frozen, models
from fedlib.learn.frozen import Upper


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))


def _w(cfg):
    return runner.run(cfg, comm=runner.make_comm("local"), progress=False).state.weights


@pytest.mark.parametrize("k", [1, "all"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_cached_run_equals_uncached(tiny_cfg, k, pooling):
    over = {"model.freeze_layers": k, "model.pooling": pooling, "model.cache_dtype": "fp32",
            "client.lr": 1e-2}
    plain = _w(tiny_cfg(name="plain", **over))
    cached = _w(tiny_cfg(name="cached", **over, **{"model.cache_features": True}))
    w0 = runner.Context.build(tiny_cfg(**over), runner.make_comm("local")).flat.get()
    assert (plain - w0).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-4)


def test_cache_is_reused(tiny_cfg):
    cfg = tiny_cfg(**{"model.freeze_layers": 1, "model.cache_features": True})
    runner.Context.build(cfg, runner.make_comm("local"))
    built = frozen.BUILDS
    files = sorted(data.cache_dir().glob("feat-*.npy"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    ctx = runner.Context.build(cfg, runner.make_comm("local"))
    assert built == frozen.BUILDS and len(files) == 2
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert isinstance(ctx.model, Upper)
    # different frozen depth -> different cache
    runner.Context.build(tiny_cfg(**{"model.freeze_layers": 0, "model.cache_features": True}),
                     runner.make_comm("local"))
    assert built + 2 == frozen.BUILDS


def test_frozen_prefix_runs_in_eval_mode(tiny_cfg):
    cfg = tiny_cfg(**{"model.freeze_layers": 1})
    model = models.build(cfg.model, num_labels=3, seed=0)
    model.train()
    ids = torch.randint(0, 4096, (4, 12))
    base = model.base_model
    a = base.encoder.layer[0](base.embeddings(input_ids=ids))
    b = base.encoder.layer[0](base.embeddings(input_ids=ids))
    assert torch.equal(a, b)
    assert model.training and base.encoder.layer[1].training  # the trainable part does train
    c = base.encoder.layer[1](a)
    assert not torch.equal(c, base.encoder.layer[1](a))  # dropout on above the prefix


def test_aliases_map_to_layers(tiny_cfg):
    m = models.build(tiny_cfg(**{"model.freeze": "lower_half"}).model, num_labels=3, seed=0)
    k1 = models.build(tiny_cfg(**{"model.freeze_layers": 1}).model, num_labels=3, seed=0)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in k1.named_parameters() if p.requires_grad]
    assert not any(n.startswith("bert.embeddings") or ".layer.0." in n for n in trainable)


def test_config_errors(tiny_cfg):
    with pytest.raises(config.ConfigError, match="model.cache_features"):
        tiny_cfg(**{"model.cache_features": True})
    with pytest.raises(config.ConfigError, match="model.freeze_layers"):
        tiny_cfg(**{"model.freeze_layers": 1, "model.freeze": "embeddings"})
    with pytest.raises(config.ConfigError, match="encoder layers"):
        runner.Context.build(tiny_cfg(**{"model.freeze_layers": 3}), runner.make_comm("local"))


def test_dpsgd_on_cached_upper(tiny_cfg):
    cfg = tiny_cfg(**{"model.freeze_layers": 1, "model.cache_features": True, "privacy.mode": "sample",
                      "privacy.noise_multiplier": 1.0, "federation.rounds": 1})
    res = runner.run(cfg, comm=runner.make_comm("local"), progress=False)
    assert res.rounds["eps_max"].iloc[-1] > 0
    assert torch.isfinite(res.state.weights).all()
