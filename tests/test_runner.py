"""Whole federated runs on a tiny random-init BERT: equivalences, resume, outputs."""

import json

import pandas as pd
import pytest
import torch

from fedlib import config, runner
from fedlib.record.metrics import PHASES
from fedlib.sim import client, participation


def _w(cfg):
    return runner.run(cfg, progress=False).state.weights


def test_fedprox_mu0_equals_fedavg(tiny_cfg):
    """The config refuses fedprox with mu = 0, so compare at the client: training with the
    proximal term at mu = 0 gives bit-identical weights to training without it."""
    ctx = runner.Context.build(tiny_cfg(), runner.make_comm("local"))
    w0 = ctx.flat.get()
    trained = []
    for penalty in (None, client.prox_term(ctx.flat.params, ctx.flat.views(w0.clone()), 0.0)):
        ctx.flat.set(w0)
        client.train(ctx.model, ctx.shards[0], ctx.cfg.client, seed=7, client_id=0, penalty=penalty)
        trained.append(ctx.flat.get().clone())
    assert not torch.equal(trained[0], w0) and torch.equal(trained[0], trained[1])


def test_fedprox_term_pulls_towards_global(tiny_cfg):
    base = tiny_cfg(name="g", **{"federation.rounds": 1})
    w0 = runner.Context.build(base, runner.make_comm("local")).flat.get()
    free = _w(base)
    prox = _w(tiny_cfg(name="p", **{"federation.rounds": 1, "strategy.algorithm": "fedprox",
                                    "client.mu": 100.0, "client.optimizer": "sgd",
                                    "client.lr": 1e-3, "client.max_grad_norm": None}))
    assert (prox - w0).norm() < (free - w0).norm()


def test_fedopt_sgd_lr1_equals_fedavg_run(tiny_cfg):
    a = _w(tiny_cfg(name="avg"))
    b = _w(tiny_cfg(name="avgm", **{"strategy.algorithm": "fedavgm", "strategy.momentum": 0.0}))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("server", [{}, {"strategy.algorithm": "fedyogi", "strategy.server_lr": 0.01}],
                         ids=["fedavg", "fedyogi"])
def test_resume_equals_uninterrupted(tiny_cfg, server):
    full = runner.run(tiny_cfg(name="full", **{"federation.rounds": 3, **server}), progress=False)
    part = tiny_cfg(name="part", **{"federation.rounds": 2, **server})
    runner.run(part, progress=False)
    resumed = runner.run(config.replace(part, **{"federation.rounds": 3}), resume=True, progress=False)
    torch.testing.assert_close(full.state.weights, resumed.state.weights, rtol=0, atol=1e-6)
    assert resumed.state.round == 3
    cols = ["round", "train_loss", "accuracy", "macro_f1"]
    pd.testing.assert_frame_equal(full.rounds[cols], resumed.rounds[cols], atol=1e-6)


def test_outputs_and_time_breakdown(tiny_cfg):
    cfg = tiny_cfg(name="out", **{"federation.fraction": 0.5})
    res = runner.run(cfg, progress=False)
    d = cfg.run_dir
    for f in ("config.yaml", "rounds.csv", "clients.csv", "summary.json", "checkpoint.pt"):
        assert (d / f).is_file(), f
    rounds = pd.read_csv(d / "rounds.csv")
    assert list(rounds["sampled"]) == [3, 3] and list(rounds["aggregated"]) == [3, 3]
    parts = rounds[[f"{p}_s" for p in PHASES]].sum(axis=1)
    assert ((parts - rounds["round_s"]).abs() < 1e-3).all()
    clients = pd.read_csv(d / "clients.csv")
    assert len(clients) == 6 and clients["steps"].eq(3).all()
    assert json.loads((d / "summary.json").read_text())["rounds"] == 2
    assert res.summary["accuracy"] == rounds["accuracy"].iloc[-1]


def test_sampling_is_seeded_per_round(tiny_cfg):
    cfg = tiny_cfg(**{"federation.clients_per_round": 2})
    picks = [participation.sample_clients(cfg, r) for r in range(1, 6)]
    assert picks == [participation.sample_clients(cfg, r) for r in range(1, 6)]
    assert len({tuple(p) for p in picks}) > 1 and all(len(p) == 2 for p in picks)


def test_resume_refuses_a_changed_config(tiny_cfg):
    from fedlib.config import ConfigError

    cfg = tiny_cfg(name="r", **{"federation.rounds": 1})
    runner.run(cfg, progress=False)
    with pytest.raises(ConfigError, match="client.lr differ from the checkpoint"):
        runner.run(config.replace(cfg, **{"client.lr": 0.5, "federation.rounds": 2}), resume=True,
                   progress=False)
