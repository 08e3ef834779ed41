"""fedlib.lab.sweep: one run per grid entry and seed, unique names, the progress file."""

import json
from pathlib import Path

import pytest
import yaml

from fedlib.lab import sweep


def test_every_entry_runs_once_per_seed(tiny_cfg, tmp_path, monkeypatch):
    progress = tmp_path / "progress.json"
    monkeypatch.setenv(sweep.PROGRESS_ENV, str(progress))
    base = tiny_cfg(**{"federation.rounds": 1, "federation.eval_every": 1})
    grid = [{"axis": "a", "federation.num_clients": 2}, {"axis": "b", "federation.num_clients": 3}]
    runs = sweep.run_grid(base, grid, seeds=[0, 7], progress=False, desc="demo")
    assert runs[["axis", "seed"]].values.tolist() == [["a", 0], ["a", 7], ["b", 0], ["b", 7]]
    assert runs["name"].is_unique and runs["name"].str.contains("seed7").sum() == 2
    assert set(runs["trainable"]) == {"full"} and runs["diverged_round"].isna().all()
    for run_dir, seed in zip(runs["run_dir"], runs["seed"], strict=True):
        assert yaml.safe_load((tmp_path / run_dir / "config.yaml").read_text())["seed"] == seed
    # same data, model and clients, another seed: another partition and training order
    a = runs[runs["axis"] == "a"]
    assert a["eval_loss"].iloc[0] != a["eval_loss"].iloc[1]
    assert json.loads(progress.read_text()) | {"started": 0} == {
        "sweep": "demo", "run": 4, "runs": 4, "finished": True, "started": 0}


def test_no_seeds_keeps_the_grid_and_duplicates_refused():
    assert sweep.with_seeds([{"x.y": 1}], None) == [{"x.y": 1}]
    with pytest.raises(ValueError, match="distinct"):
        sweep.with_seeds([{"x.y": 1}], [1, 1])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from fedlib.learn import tiny as tc

    root = tmp_path_factory.mktemp("bert")
    return tc.checkpoint(root / "ckpt", "bert", tc.wordpiece_vocab(root / "wp"))


def _exports(runs):
    return runs["exported"].notna().tolist()


def test_a_sweep_exports_nothing_by_default_and_a_preset_never(bert_dir, tiny_cfg, monkeypatch, tmp_path):
    """`federation.export` is on for a single run; a sweep turns it off unless asked, and a
    random-init preset (the timing runs' models) never exports even when asked."""
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    base = tiny_cfg(**{"model.name": str(bert_dir), "model.overrides": {}, "federation.rounds": 1})
    assert base.federation.export  # the single-run default
    grid = [{"federation.num_clients": 2}]
    runs = sweep.run_grid(base, grid, seeds=[0, 1], progress=False)
    assert _exports(runs) == [False, False]
    assert not any((Path(d) / "model").exists() for d in runs["run_dir"])
    preset = sweep.run_grid(tiny_cfg(**{"federation.rounds": 1}), grid, progress=False, export=True)
    assert _exports(preset) == [False]


def test_a_sweep_keeps_the_best_export_per_grid_point(bert_dir, tiny_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "cache"))
    base = tiny_cfg(**{"model.name": str(bert_dir), "model.overrides": {}, "federation.rounds": 1})
    grid = [{"federation.num_clients": 2}, {"federation.num_clients": 3}]
    runs = sweep.run_grid(base, grid, seeds=[0, 1, 2], progress=False, export="best")
    for clients, g in runs.groupby("clients"):
        kept = g[g["exported"].notna()]
        assert len(kept) == 1, clients
        assert kept["accuracy"].iloc[0] == g["accuracy"].max()
        on_disk = [d for d in g["run_dir"] if (Path(d) / "model").is_dir()]
        assert on_disk == [str(Path(kept["exported"].iloc[0]).parent)]
    listed = sweep.run_grid(base, grid, progress=False, export=[1])
    assert _exports(listed) == [False, True]
    with pytest.raises(ValueError, match="export=\\[2\\]"):
        sweep.run_grid(base, grid, progress=False, export=[2])
    with pytest.raises(ValueError, match="export='all'"):
        sweep.run_grid(base, grid, progress=False, export="all")


def test_a_sweep_deletes_residuals_no_checkpoint_can_use(tiny_cfg):
    ef = {"federation.aggregation": "p2p", "federation.payload_dtype": "bf16",
          "federation.error_feedback": True, "federation.rounds": 1}
    runs = sweep.run_grid(tiny_cfg(**ef, **{"federation.checkpoint_every": 0}), [{}], progress=False)
    assert not (Path(runs["run_dir"][0]) / "residuals").exists()
    kept = sweep.run_grid(tiny_cfg(**ef), [{}], progress=False)
    # a residual is kept only for a client sampled again (issue 28 §4): after the last round no
    # client is, so even a checkpointed run keeps none (its resume refuses more rounds)
    assert len(list((Path(kept["run_dir"][0]) / "residuals").glob("*.pt"))) == 0
