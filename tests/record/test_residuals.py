"""Error-feedback residuals at scale: one model-sized float32 file per client carried, so
bert-base (110M values) x 1,000 clients is 440 GB. Only clients sampled again keep one (the
rounds' clients are drawn from (seed, round) before the run), a run whose residuals cannot fit
is refused before it writes anything, and a resume may not add rounds the kept set never saw."""

import shutil
from collections import namedtuple

import pytest
import torch

from fedlib import config, runner
from fedlib.record import residuals
from fedlib.record.checkpoint import WriteError
from fedlib.sim.participation import sample_clients

EF = {"federation.error_feedback": True, "federation.payload_dtype": "bf16", "federation.aggregation": "p2p"}


def test_bert_base_at_1000_clients_is_refused_with_the_number(tmp_path):
    """By hand: 1000 clients, all in each of 2 rounds, 110,000,000 values x 4 bytes = 440 GB."""
    cfg = config.load(None, {"output_dir": str(tmp_path), "federation.num_clients": 1000,
                             "federation.fraction": 1.0, "federation.rounds": 2, **EF})
    assert residuals.carried(cfg) == 1000
    assert residuals.room(cfg, 110_000_000, free=100_000_000_000) == (
        "federation.error_feedback: the residuals need 440.0 GB (1000 clients sampled again x "
        f"110,000,000 trainable values x 4 bytes) but {tmp_path} has 100.0 GB free; sample fewer "
        "clients, train fewer parameters (model.freeze_layers, model.lora_r) or set "
        "federation.error_feedback: false")
    assert residuals.room(cfg, 110_000_000, free=440_000_000_000) is None
    one_round = config.replace(cfg, **{"federation.rounds": 1})  # nobody is sampled again
    assert residuals.carried(one_round) == 0 and residuals.room(one_round, 110_000_000, free=0) is None


def test_a_run_that_cannot_hold_its_residuals_stops_before_writing(tmp_path, tiny_cfg, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(WriteError, match=r"^federation.error_feedback: the residuals need 0.0 GB \("):
        runner.run(tiny_cfg(name="full", **EF), progress=False)
    assert not (tmp_path / "full" / "rounds.csv").exists()


def test_only_clients_sampled_again_keep_a_residual_and_the_run_is_the_same(tmp_path, tiny_cfg, monkeypatch):
    """A residual is written only when a later round reads it: (client, round) with the client
    sampled again after `round`. Before, every sampled client wrote one every round, and the
    last ones stayed in the folder. The weights are those of a run keeping every residual."""
    over = {**EF, "federation.rounds": 3, "federation.fraction": 0.5, "federation.checkpoint_every": 0}
    cfg = tiny_cfg(name="kept", **over)
    rounds = [sample_clients(cfg, r) for r in (1, 2, 3)]
    needed = sorted(f"{c}.{r}.pt" for r, cs in enumerate(rounds, 1) for c in cs
                    if any(c in later for later in rounds[r:]))
    assert 0 < len(needed) < sum(map(len, rounds))  # the draw has both kinds
    written: list[str] = []
    real = residuals.atomic_write
    monkeypatch.setattr(residuals, "atomic_write", lambda path, content: (written.append(path.name),
                                                                           real(path, content))[1])
    got = runner.run(cfg, progress=False)
    assert sorted(written) == needed
    assert not list((tmp_path / "kept" / "residuals").glob("*.pt"))  # after the last round: none
    every = residuals.ResidualStore  # every residual kept, as before: the same training
    monkeypatch.setattr(residuals, "for_run", lambda c: every(c.run_dir / "residuals", checkpoints=False))
    ref = runner.run(tiny_cfg(name="all", **over), progress=False)
    assert torch.equal(got.state.weights, ref.state.weights)


def test_a_resume_may_not_add_rounds_to_an_error_feedback_run(tmp_path, tiny_cfg):
    runner.run(tiny_cfg(name="ef", **EF, **{"federation.rounds": 2}), progress=False)
    with pytest.raises(config.ConfigError, match=r"federation.rounds grows from 2 to 3 with federation"):
        runner.run(tiny_cfg(name="ef", **EF, **{"federation.rounds": 3}), resume=True, progress=False)
