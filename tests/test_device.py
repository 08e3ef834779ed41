"""Device choice, precision and the device path on the CPU (the GPU side is tests/test_gpu.py)."""

import pytest
import torch

from fedlib import client, config, device, runner
from fedlib.wire.timer import Timer


def test_resolve_cpu_and_auto_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_xpu_count", lambda: 0)
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("auto", local_rank=3) == torch.device("cpu")
    with pytest.raises(config.ConfigError, match="^device: 'cuda'"):
        device.resolve("cuda")


def test_auto_binds_local_rank_modulo_visible_gpus(monkeypatch):
    # the launcher's local rank (each launcher's variables: tests/test_launcher.py)
    monkeypatch.setattr(device.launcher, "local_rank", lambda: 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    assert device.resolve("auto") == torch.device("cuda", 1)  # 3 % 2
    assert device.resolve("cuda") == torch.device("cuda", 1)
    assert device.resolve("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(config.ConfigError, match="^device: 'cuda:2' but only 2"):
        device.resolve("cuda:2")


def test_config_rejects_bad_device_and_low_precision_dp_sgd():
    with pytest.raises(config.ConfigError, match="^device: must be auto"):
        config.load(None, {"device": "gpu"})
    with pytest.raises(config.ConfigError, match="^client.precision: DP-SGD"):
        config.load(None, {"client.precision": "bf16", "privacy.mode": "sample",
                           "privacy.noise_multiplier": 1.0})
    assert config.load(None, {"device": "cuda:1"}).device == "cuda:1"


def test_timer_moves_copy_seconds_out_of_comm():
    t = Timer()
    t.s["comm"] = 1.0
    t.move("comm", "copy", 0.25)
    t.move("comm", "copy", 5.0)  # never more than comm holds
    assert (t.s["comm"], t.s["copy"]) == (0.0, 1.0)


def test_cpu_device_path_is_auto_here_and_reproducible(tiny_cfg):
    a = runner.run(tiny_cfg(name="cpu", device="cpu"), progress=False)
    b = runner.run(tiny_cfg(name="auto"), progress=False)  # auto -> cpu on this box
    assert torch.equal(a.state.weights, b.state.weights)
    assert a.state.weights.device == torch.device("cpu")
    assert (a.rounds["copy_s"] == 0).all()  # one process: nothing staged


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_close_to_fp32(tiny_cfg, precision):
    """Autocast really runs (weights differ from fp32) and the tiny run stays close: accuracy
    within 0.1, weights within 1e-2 after 2 rounds of 3 steps."""
    ref = runner.run(tiny_cfg(name="fp32"), progress=False)
    low = runner.run(tiny_cfg(name=precision, **{"client.precision": precision}), progress=False)
    w0 = runner.Run.build(tiny_cfg(), runner.make_comm("local")).flat.get()
    assert not torch.equal(low.state.weights, ref.state.weights)
    assert torch.isfinite(low.state.weights).all()
    moved = (ref.state.weights - w0).abs().max()
    assert (low.state.weights - ref.state.weights).abs().max() < 0.2 * moved
    assert abs(low.summary["accuracy"] - ref.summary["accuracy"]) <= 0.1
    again = runner.run(tiny_cfg(name=precision + "2", **{"client.precision": precision}), progress=False)
    assert torch.equal(again.state.weights, low.state.weights)  # reproducible run to run


def test_one_process_needs_no_process_group(monkeypatch):
    """federation.backend=torch outside a launcher is the local world of one (no rendezvous)."""
    for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(v, raising=False)
    cfg = config.load(None, {"federation.backend": "torch", "device": "cpu"})
    comm = runner.comm_for(cfg)
    assert (comm.size, comm.copy_s) == (1, 0.0)
    with pytest.raises(config.ConfigError, match="^federation.backend"):
        config.load(None, {"federation.backend": "nccl"})


def test_seed_dropout_draws_what_torch_manual_seed_draws():
    device.seed_dropout(torch.device("cpu"), 2**63 + 12345)  # a 64-bit stream seed
    a = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
    torch.manual_seed(2**63 + 12345)
    b = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
    assert torch.equal(a, b)


def test_client_trains_with_the_same_dropout_masks_without_torch_manual_seed(tiny_cfg, monkeypatch):
    """torch.manual_seed seeds every backend lazily with a formatted stack (0.1-0.5 ms a client);
    client.train seeds only its device's generators and gets the same weights (dropout active)."""
    cfg = tiny_cfg()
    ctx = runner.Run.build(cfg, runner.make_comm("local"))
    w0 = ctx.flat.get()

    def trained() -> torch.Tensor:
        ctx.flat.set(w0)
        client.train(ctx.model, ctx.shards[0], cfg.client, seed=1234, client_id=0)
        return ctx.flat.get()

    monkeypatch.setattr(client, "seed_dropout", lambda dev, s: torch.manual_seed(s))
    before = trained()  # the code as it was
    monkeypatch.setattr(client, "seed_dropout", lambda dev, s: torch.manual_seed(s + 1))
    assert not torch.equal(trained(), before)  # the masks matter in this model
    monkeypatch.undo()

    def fail(*a, **k):
        raise AssertionError("torch.manual_seed called per client")

    monkeypatch.setattr(torch, "manual_seed", fail)
    assert torch.equal(trained(), before)
