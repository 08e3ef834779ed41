"""fedlib.lab.disk: the per-run size model against what real runs wrote, and `used`."""

import time

import pytest

from fedlib import config, runner
from fedlib.lab import disk
from fedlib.learn import tiny as tc
from fedlib.record import residuals
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    return tc.checkpoint(root / "ckpt", "bert", tc.wordpiece_vocab(root / "wp"))


def _files(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_size for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("extra", [
    {"strategy.algorithm": "fedadam"},  # checkpoint with two moments + export
    {"federation.aggregation": "p2p", "federation.payload_dtype": "bf16", "federation.error_feedback": True,
     "federation.checkpoint_every": 0, "federation.export": False},  # residuals only
], ids=["checkpoint+export", "residuals"])
def test_size_model_matches_what_a_run_wrote(bert_dir, tmp_path, monkeypatch, extra):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    over = {"model.name": str(bert_dir), "model.overrides": {}, **extra}
    cfg = config.load(None, tiny_overrides(tmp_path / "runs", **over))
    t0 = time.time()
    held = [0]  # the residual folder's largest size during the run
    put = residuals.ResidualStore.put

    def spy(store, cid, rnd, r):
        put(store, cid, rnd, r)
        held[0] = max(held[0], sum(f.stat().st_size for f in store.folder.glob("*.pt")))
    monkeypatch.setattr(residuals.ResidualStore, "put", spy)
    res = runner.run(cfg, progress=False)
    params = int(res.rounds["params"].iloc[0])
    files = _files(cfg.run_dir)
    actual = sum(files.values())
    tokenizer = sum(v for k, v in files.items() if k.startswith("model/") and "safetensors" not in k)
    est = disk.run_bytes(cfg, params) - (disk.TOKENIZER - tokenizer if cfg.federation.export else 0)
    if cfg.federation.error_feedback:  # the residuals are the peak: none is left after the last round
        assert not [k for k in files if k.startswith("residuals/")]
        peak = residuals.carried(cfg) * params * 4  # one file per client sampled again, at most
        assert 0 < held[0] <= peak + 10_000 * residuals.carried(cfg)
        # the rest as the run ends, within 3% of what the folder held at its fullest
        assert abs(est - peak - actual) < 0.03 * (actual + held[0]), (est, actual, files)
    else:
        assert abs(est - actual) < 0.03 * actual, (est, actual, files)
    moments = 2 if "strategy.algorithm" in extra else 0
    if cfg.federation.checkpoint_every:  # the tensor-sized part alone, known answer
        assert abs(files["checkpoint.pt"] - params * 4 * (1 + moments)) < 10_000
    assert disk.used(tmp_path / "runs", t0) == actual
    assert disk.used(tmp_path / "runs", time.time() + 10) == 0


def test_a_preset_never_counts_an_export_and_moments_follow_the_algorithm(tmp_path):
    cfg = config.load(None, {"output_dir": str(tmp_path), "model.name": "bert-base-uncased",
                             "strategy.algorithm": "fedadam", "federation.num_clients": 2,
                             "federation.rounds": 1})
    p = 109_482_240
    small = disk.FIXED + disk.ROUND_ROW + 2 * disk.CLIENT_ROW + 2 * disk.PARTITION_ROW
    assert disk.run_bytes(cfg, p) == small + p * 4 * 3  # weights + m + v; a preset: no model/
    avg = config.replace(cfg, **{"strategy.algorithm": "fedavg", "model.name": "minilm"})
    assert disk.run_bytes(avg, 22_714_371) == small + 22_714_371 * 4 * 2 + disk.TOKENIZER


def test_human():
    assert [disk.human(x) for x in (999, 1500, 18e9)] == ["999 B", "1.5 kB", "18.0 GB"]


def test_the_full_profile_estimate_names_its_largest_run(monkeypatch):
    """06's error-feedback timing run at its largest client count holds one model-sized residual
    per client while it runs (deleted at the end): the estimate's peak is that run."""
    import yaml

    from fedlib.lab import reproduce

    p = yaml.safe_load((reproduce.PARAMS / "full" / "06_system_strategies.yaml").read_text())
    params = disk.param_count(p["model"])
    assert params == 109_482_240  # bert-base-uncased (encoder + pooler), as published
    runs, total, peak = disk.estimate("full", ["06_system_strategies"], reproduce.PARAMS)
    assert runs == 2 * len(p["clients"]) * len(p["seeds"]) + 7 * len(p["clients"]) + 4 * len(p["seeds"])
    assert max(p["clients"]) * params * 4 < peak < max(p["clients"]) * params * 4 * 1.001
    assert total < 10e6  # what stays: CSVs only (no checkpoints, no exports, residuals deleted)
    quick_runs, quick_total, _ = disk.estimate("quick", ["00_quickstart"], reproduce.PARAMS)
    assert quick_runs == 1
    assert 2 * 22e6 * 4 < quick_total < 2 * 23e6 * 4 + disk.TOKENIZER + 100_000  # checkpoint + export
