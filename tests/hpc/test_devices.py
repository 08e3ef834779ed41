"""Device choice, precision and the device path on the CPU (the GPU side is tests/hpc/test_gpu.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedlib import config, runner
from fedlib.hpc import devices, vendor
from fedlib.sim import client
from fedlib.wire.timer import Timer
from tests.conftest import ROOT


def test_resolve_cpu_and_auto_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_xpu_count", lambda: 0)
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto", local_rank=3) == torch.device("cpu")
    with pytest.raises(config.ConfigError, match="^device: 'cuda'"):
        devices.resolve("cuda")


def test_auto_binds_local_rank_modulo_visible_gpus(monkeypatch):
    # the launcher's local rank (each launcher's variables: tests/hpc/test_launcher.py)
    monkeypatch.setattr(devices.launcher, "local_rank", lambda: 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    assert devices.resolve("auto") == torch.device("cuda", 1)  # 3 % 2
    assert devices.resolve("cuda") == torch.device("cuda", 1)
    assert devices.resolve("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(config.ConfigError, match="^device: 'cuda:2' but only 2"):
        devices.resolve("cuda:2")


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
    w0 = runner.Context.build(tiny_cfg(), runner.make_comm("local")).flat.get()
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
    devices.seed_dropout(torch.device("cpu"), 2**63 + 12345)  # a 64-bit stream seed
    a = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
    torch.manual_seed(2**63 + 12345)
    b = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
    assert torch.equal(a, b)


def test_client_trains_with_the_same_dropout_masks_without_torch_manual_seed(tiny_cfg, monkeypatch):
    """torch.manual_seed seeds every backend lazily with a formatted stack (0.1-0.5 ms a client);
    client.train seeds only its device's generators and gets the same weights (dropout active)."""
    cfg = tiny_cfg()
    ctx = runner.Context.build(cfg, runner.make_comm("local"))
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


# --- Intel (Aurora) and AMD (Frontier) through stubbed device modules -----------------------

class FakeXPU:
    """torch.xpu as a site's IPEX build behaves: no device until IPEX is imported."""

    def __init__(self, count: int = 2) -> None:
        self.calls: list[str] = []
        self.ready = False
        self.count = count

    def is_available(self) -> bool:
        self.calls.append("xpu.is_available")
        return self.ready

    def device_count(self) -> int:
        self.calls.append("xpu.device_count")
        return self.count if self.ready else 0

    def set_device(self, i: int) -> None:
        self.calls.append(f"xpu.set_device({i})")


def fake_package(root: Path, name: str, body: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(f"import torch\n{body}\n")


@pytest.fixture
def xpu(monkeypatch, tmp_path):
    """A fake torch.xpu and a folder on sys.path for fake site packages."""
    fake = FakeXPU()
    monkeypatch.setattr(torch, "xpu", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(vendor, "_IMPORTED", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("intel_extension_for_pytorch", "oneccl_bindings_for_pytorch")
    yield fake, tmp_path
    for n in names:
        sys.modules.pop(n, None)


def test_ipex_imported_before_torch_xpu_and_device_set_per_local_rank(xpu):
    fake, root = xpu
    assert devices.resolve("auto", local_rank=3) == torch.device("cpu")  # no IPEX installed
    fake.calls.clear()
    vendor._IMPORTED.clear()
    fake_package(root, "intel_extension_for_pytorch",
                 "torch.xpu.calls.append('import ipex')\ntorch.xpu.ready = True")
    assert devices.resolve("auto", local_rank=3) == torch.device("xpu", 1)  # 3 % 2
    assert fake.calls == ["import ipex", "xpu.is_available", "xpu.device_count", "xpu.set_device(1)"]
    assert devices.resolve("xpu:0", local_rank=3) == torch.device("xpu", 0)
    assert fake.calls[-1] == "xpu.set_device(0)" and fake.calls.count("import ipex") == 1


def test_prepare_backend_imports_oneccl_after_ipex(xpu):
    fake, root = xpu
    with pytest.raises(RuntimeError, match="^torch.distributed backend ccl needs oneccl_bindings"):
        vendor.prepare_backend("ccl")
    vendor.prepare_backend("xccl")  # native in torch >= 2.8: the bindings are optional
    vendor._IMPORTED.clear()
    fake_package(root, "intel_extension_for_pytorch", "torch.xpu.calls.append('import ipex')")
    fake_package(root, "oneccl_bindings_for_pytorch",
                 "assert 'import ipex' in torch.xpu.calls\ntorch.xpu.calls.append('import oneccl')")
    vendor.prepare_backend("ccl")
    assert fake.calls == ["import ipex", "import oneccl"]
    vendor.prepare_backend("gloo")  # nothing for the others
    assert fake.calls == ["import ipex", "import oneccl"]


@pytest.mark.parametrize(("vendor", "env", "want"), [
    ("nvidia", {"CUDA_VISIBLE_DEVICES": "2,3"}, ("CUDA_VISIBLE_DEVICES=2,3", 2)),
    ("nvidia", {"CUDA_VISIBLE_DEVICES": ""}, ("CUDA_VISIBLE_DEVICES=", 0)),   # hides all
    ("nvidia", {"ROCR_VISIBLE_DEVICES": "0"}, ("", None)),                      # not NVIDIA's
    ("amd", {"ROCR_VISIBLE_DEVICES": "0,1,2,3"}, ("ROCR_VISIBLE_DEVICES=0,1,2,3", 4)),
    ("amd", {"ROCR_VISIBLE_DEVICES": "4,5,6,7", "HIP_VISIBLE_DEVICES": "1"},  # HIP indexes ROCR's
     ("ROCR_VISIBLE_DEVICES=4,5,6,7 HIP_VISIBLE_DEVICES=1", 1)),
    ("intel", {"ZE_AFFINITY_MASK": "0.0,0.1"}, ("ZE_AFFINITY_MASK=0.0,0.1", 2)),
    ("intel", {}, ("", None)),
])
def test_visible_devices_under_each_vendors_masks(vendor, env, want):
    assert devices.visible(vendor, env) == want


def test_auto_warns_when_the_node_has_gpus_torch_cannot_use(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_xpu_count", lambda: 0)
    monkeypatch.setattr(devices, "_WARNED", set())
    (tmp_path / "kfd").write_text("")
    env = {"ROCR_VISIBLE_DEVICES": "0,1", "SLURM_GPUS_ON_NODE": "2"}
    assert devices.node_gpus(env, tmp_path) == [f"AMD ROCm driver ({tmp_path}/kfd)",
                                               "SLURM_GPUS_ON_NODE=2", "ROCR_VISIBLE_DEVICES=0,1"]
    msg = devices.unused_gpus(env, tmp_path)
    assert msg is not None and msg.startswith("this node has GPUs (AMD ROCm driver") and "sees none" in msg
    assert devices.unused_gpus({"SLURM_GPUS_ON_NODE": "0"}, tmp_path / "none") is None
    assert "CUDA_VISIBLE_DEVICES is empty (hides every GPU)" in devices.unused_gpus(
        {"CUDA_VISIBLE_DEVICES": ""}, tmp_path)
    monkeypatch.setattr(devices, "node_gpus", lambda env=None, dev=None: ["2 NVIDIA device file(s)"])
    with pytest.warns(UserWarning, match="^device: auto: this node has GPUs"):
        assert devices.resolve("auto", local_rank=0) == torch.device("cpu")


def test_env_sh_puts_miopen_caches_on_node_local_storage(tmp_path):
    """OLCF: MIOpen's default ~/.cache/miopen on a shared file system fails with I/O errors."""
    node = tmp_path / "node-tmp"
    node.mkdir()
    (tmp_path / ".venv/bin").mkdir(parents=True)  # env.sh activates the job's venv
    (tmp_path / ".venv/bin/activate").write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "TMPDIR": str(node),
           "SCRATCH": str(tmp_path), "USER": "me", "SLURM_JOB_ID": "77"}
    script = f"source {ROOT}/cluster/env.sh && echo $MIOPEN_USER_DB_PATH && echo $MIOPEN_CUSTOM_CACHE_DIR"
    out = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [f"{node}/miopen-me-77"] * 2
    assert (node / "miopen-me-77").is_dir()
    env["MIOPEN_USER_DB_PATH"] = str(tmp_path / "mine")
    out = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "mine")] * 2  # a user's own setting wins


def test_a_torch_comm_on_xpu_loads_oneccl_before_its_group(xpu, monkeypatch):
    """Aurora with torch < 2.8 (no native xccl): the group's backend is ccl, which exists only
    once oneccl_bindings_for_pytorch is imported (after IPEX). prepare_backend did that, but
    nothing called it: init_process_group("ccl") would have met an unknown backend."""
    from fedlib.wire import torch_comm

    fake, root = xpu
    seen = []
    monkeypatch.setattr(torch_comm.dist, "is_backend_available", lambda name: False)
    monkeypatch.setattr(torch_comm.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch_comm.dist, "init_process_group",
                        lambda backend, **kw: seen.append((backend, list(fake.calls))))
    monkeypatch.setattr(torch_comm.atexit, "register", lambda fn: None)
    monkeypatch.setattr(torch_comm, "_world", lambda: (0, 1, None))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(RuntimeError, match="^torch.distributed backend ccl needs oneccl_bindings"):
        torch_comm.TorchComm(device=torch.device("xpu", 0))
    assert seen == []  # refused in one line, before any group
    vendor._IMPORTED.clear()
    fake_package(root, "intel_extension_for_pytorch", "torch.xpu.calls.append('import ipex')")
    fake_package(root, "oneccl_bindings_for_pytorch", "torch.xpu.calls.append('import oneccl')")
    comm = torch_comm.TorchComm(device=torch.device("xpu", 0))
    assert comm.backend == "ccl" and seen == [("ccl", ["import ipex", "import oneccl"])]


@pytest.mark.parametrize(("own", "local", "allowed", "want"), [
    (1, 2, 2, 2),  # this box: 2 ranks of 1 thread, unbound: the builder takes both cores
    (1, 8, 4, 4),  # never more than the CPUs this rank may run on
    (4, 2, 2, 4),  # never fewer than its own threads
    (2, 1, 16, 2),  # alone on its node: nothing to borrow
])
def test_builder_threads_borrow_the_waiting_ranks_cores_and_give_them_back(monkeypatch, own, local, allowed,
                                                                            want):
    from fedlib.hpc import launcher
    monkeypatch.setattr(launcher, "local_size", lambda ranks, env=None: local)
    monkeypatch.setattr(launcher, "_cpus", lambda: allowed)
    before = torch.get_num_threads()
    torch.set_num_threads(own)
    try:
        with devices.builder_threads(local) as n:
            assert n == want == torch.get_num_threads()
        assert torch.get_num_threads() == own
    finally:
        torch.set_num_threads(before)


def test_an_idle_barrier_on_one_process_returns():
    from fedlib.wire.comm import LocalComm
    LocalComm().barrier(idle=True)
