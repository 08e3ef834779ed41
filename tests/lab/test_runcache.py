"""fedlib.lab.runcache: a run is reused exactly when its resolved config (name and folder aside),
ranks and fedlib source match; anything else runs again."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fedlib.lab import runcache, sweep


def test_the_key_is_what_the_run_computes(tiny_cfg):
    cfg = tiny_cfg(**{"federation.rounds": 1})
    k = runcache.key(cfg, 2)
    elsewhere = tiny_cfg(**{"federation.rounds": 1, "name": "other", "output_dir": "/elsewhere"})
    assert runcache.key(elsewhere, 2) == k
    for changed in ({"client.lr": 2e-3}, {"seed": 1}, {"participation.speed": "lognormal"},
                    {"data.max_train_samples": 191}):
        assert runcache.key(tiny_cfg(**{"federation.rounds": 1, **changed}), 2) != k, changed
    assert runcache.key(cfg, 1) != k  # timings depend on the ranks
    assert runcache.key(cfg, 2, source="an edited fedlib") != k


def test_a_source_edit_changes_the_digest(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = runcache.source_digest(tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    runcache.source_digest.cache_clear()
    assert runcache.source_digest(tmp_path) != before
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    runcache.source_digest.cache_clear()
    assert runcache.source_digest(tmp_path) == before
    runcache.source_digest.cache_clear()


@pytest.fixture
def counting(monkeypatch, tmp_path):
    """A cache root and a run log in the environment, and a run function that counts its calls."""
    monkeypatch.setenv(runcache.ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(runcache.LOG_ENV, str(tmp_path / "runs.jsonl"))
    calls: list[str] = []

    def run(cfg):
        calls.append(cfg.name)
        return sweep.local_run(cfg)
    return run, calls


def test_an_identical_run_is_reused_and_a_changed_one_reruns(tiny_cfg, counting, tmp_path, monkeypatch):
    run, calls = counting
    base = tiny_cfg(**{"federation.rounds": 1, "federation.export": False})
    grid = [{"axis": "a", "federation.num_clients": 2}, {"axis": "b", "federation.num_clients": 3}]
    first = sweep.run_grid(base, grid, run=run, seeds=[0, 1], progress=False, desc="one")
    assert len(calls) == 4 and not first["reused"].any()

    # another notebook's sweep (other name, other labels) asking for the same runs: none runs
    other = sweep.run_grid(tiny_cfg(**{"federation.rounds": 1, "federation.export": False, "name": "het"}),
                           [{"setting": "x", "federation.num_clients": 2}], run=run, seeds=[0, 1],
                           progress=False, desc="two")
    assert len(calls) == 4 and other["reused"].all()
    assert other["setting"].tolist() == ["x", "x"] and other["seed"].tolist() == [0, 1]
    same = first[first["axis"] == "a"].reset_index(drop=True)
    for col in ("accuracy", "eval_loss", "run_dir", "params", "trainable"):
        assert other[col].tolist() == same[col].tolist(), col

    # one entry changed: only its runs run again
    changed = [{"axis": "a", "federation.num_clients": 2}, {"axis": "b", "federation.num_clients": 4}]
    again = sweep.run_grid(base, changed, run=run, seeds=[0, 1], progress=False)
    assert len(calls) == 6 and again["reused"].tolist() == [True, True, False, False]

    # an edit to fedlib's source: everything runs again
    monkeypatch.setattr(runcache, "source_digest", lambda: "edited")
    sweep.run_grid(base, grid, run=run, seeds=[0], progress=False)
    assert len(calls) == 8

    log = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [x["reused"] for x in log] == [False] * 4 + [True] * 2 + [True, True, False, False] + [False] * 2
    assert runcache.tally(tmp_path / "runs.jsonl")[:2] == (12, 4)


def test_nothing_is_cached_without_the_environment(tiny_cfg, monkeypatch, tmp_path):
    monkeypatch.delenv(runcache.ENV, raising=False)
    calls = []
    base = tiny_cfg(**{"federation.rounds": 1, "federation.export": False})
    for _ in range(2):
        runs = sweep.run_grid(base, [{"federation.num_clients": 2}], run=lambda c: calls.append(1)
                              or sweep.local_run(c), progress=False)
    assert len(calls) == 2 and not runs["reused"].any()


def test_a_run_whose_folder_is_gone_or_that_exports_runs_again(tiny_cfg, counting, tmp_path, monkeypatch):
    import shutil

    from fedlib.learn import tiny as tc

    run, calls = counting
    base = tiny_cfg(**{"federation.rounds": 1, "federation.export": False})
    grid = [{"federation.num_clients": 2}]
    first = sweep.run_grid(base, grid, run=run, progress=False)
    shutil.rmtree(first["run_dir"].iloc[0])
    sweep.run_grid(base, grid, run=run, progress=False)
    assert len(calls) == 2
    monkeypatch.setenv("FEDLIB_CACHE", str(tmp_path / "features"))
    ckpt = tc.checkpoint(tmp_path / "ckpt", "bert", tc.wordpiece_vocab(tmp_path / "wp"))
    exporting = tiny_cfg(**{"federation.rounds": 1, "model.name": str(ckpt), "model.overrides": {}})
    for _ in range(2):  # a run that writes its model is never served from the cache
        runs = sweep.run_grid(exporting, grid, run=run, progress=False, export=True)
        assert runs["exported"].notna().all() and not runs["reused"].any()
    assert len(calls) == 4


def test_a_cached_row_reads_back_as_it_was_written(tmp_path, tiny_cfg):
    store = runcache.Store(tmp_path / "c")
    cfg = tiny_cfg()
    (cfg.run_dir).mkdir(parents=True)
    (cfg.run_dir / "summary.json").write_text("{}")
    import numpy as np

    row = {"accuracy": np.float64(0.1 + 0.2), "n": np.int64(3), "gone": float("nan"), "why": None, "s": "x"}
    store.put("k", row, cfg, 1.5)
    got = store.get("k")
    assert got is not None and got["seconds"] == 1.5 and got["run_dir"] == str(cfg.run_dir)
    back = got["row"]
    assert back["accuracy"] == 0.1 + 0.2 and back["n"] == 3 and back["why"] is None and back["s"] == "x"
    assert pd.isna(back["gone"])
    assert store.get("missing") is None
    assert Path(tmp_path / "c" / "k.json").is_file()


def test_reproduce_reuses_a_run_an_earlier_notebook_made_and_says_so(tmp_path, capsys):
    """Two toy notebooks asking for the same run: the second reuses it; the invocation's table and
    printout count it. A second invocation reuses both; --no-reuse reruns both."""
    import nbformat

    from fedlib.lab import reproduce
    from tests.conftest import tiny_overrides

    books, params = tmp_path / "nb", tmp_path / "params" / "p"
    books.mkdir()
    params.mkdir(parents=True)
    over = tiny_overrides(tmp_path, **{"federation.rounds": 1, "federation.export": False})
    over.pop("output_dir")
    for name in ("01_first", "02_again"):
        (params / f"{name}.yaml").write_text("profile: p\nout_dir: x\n")
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
            nbformat.v4.new_code_cell(
                "from fedlib import config\nfrom fedlib.lab import sweep\n"
                f"base = config.load(None, {{**{over!r}, 'output_dir': out_dir + '/runs'}})\n"
                "runs = sweep.run_grid(base, [{'federation.num_clients': 2}], seeds=[0], progress=False)")])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, books / f"{name}.ipynb")
    kw = {"notebooks": books, "out_root": tmp_path / "out", "params": params.parent}
    table = reproduce.run("p", **kw)
    assert table[["runs", "reused"]].values.tolist() == [[1, 0], [1, 1]]
    printed = capsys.readouterr().out
    assert "02_again: 1 runs, 1 reused" in printed and "2 runs, 1 of them reused" in printed
    assert reproduce.run("p", **kw)["reused"].tolist() == [1, 1]
    assert reproduce.run("p", reuse=False, **kw)["reused"].tolist() == [0, 0]
    assert len(list((tmp_path / "out" / "p" / reproduce.CACHE).iterdir())) == 1
