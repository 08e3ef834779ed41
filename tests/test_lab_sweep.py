"""fedlib.lab.sweep: one run per grid entry and seed, unique names, the progress file."""

import json

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
    assert set(runs["trainable"]) == {"full"}
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
