"""Benchmarks never export their models (issue 18: 01's and 06's random-init runs wrote 18 GB of
model folders nobody loads): neither the runs they start in-process nor those they launch as
`python -m fedlib run` (whose default is to export)."""

import subprocess

import pytest

from fedlib.bench import common, overhead


def test_a_benchmark_cli_run_is_told_not_to_export(tmp_path, monkeypatch):
    seen = {}

    def fake(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "stop here")

    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(RuntimeError, match="failed"):
        common.run({"name": "x", "output_dir": str(tmp_path)})
    args = seen["cmd"]
    assert args[args.index("federation.export=false") - 1] == "--set"
    with pytest.raises(RuntimeError):  # a benchmark that wants an export still can
        common.run({"name": "x", "output_dir": str(tmp_path), "federation.export": True})
    assert "federation.export=true" in seen["cmd"] and "federation.export=false" not in seen["cmd"]


def test_in_process_benchmark_configs_do_not_export(tmp_path):
    from fedlib.bench import accuracy

    assert not overhead._cfg(tmp_path, True, 1).federation.export
    assert not accuracy.fed_config(tmp_path, False).federation.export


def test_the_bare_loop_moves_each_batch_to_the_models_device(tmp_path, monkeypatch):
    """Workload W's bare loop fed host batches to the model: on the first GPU (2026-12-04) it
    failed with "index is on cpu, different from other tensors on cuda:0". Here (no GPU) the
    loop must hand every batch to client.on with the context's device, as client.train does."""
    from fedlib import config, runner
    from fedlib.bench.gpucheck import ROOT, TINY
    from fedlib.sim import client
    from fedlib.wire.comm import LocalComm

    cfg = config.load(ROOT / "params/quickstart.yaml",
                      {**TINY, "name": "w", "output_dir": str(tmp_path), "device": "cpu"})
    ctx = runner.Context.build(cfg, LocalComm())
    moved, real = [], client.on
    monkeypatch.setattr(client, "on", lambda batch, dev: moved.append(dev) or real(batch, dev))
    overhead.bare_round(ctx, cfg, 1)
    steps = sum(ctx.steps(c) for c in range(cfg.federation.num_clients))
    assert moved == [ctx.device] * steps
