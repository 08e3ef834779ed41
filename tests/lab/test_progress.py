"""`reproduce` shows a running notebook's progress: the sweep's run i/n and round r/R."""

import json

import nbformat
import pandas as pd

from fedlib.lab import reproduce

# A notebook standing in for a sweep: run 2 of 5 has finished 3 of its 4 rounds.
BODY = """
import json, os, time
from pathlib import Path
csv = Path(out_dir) / "rounds.csv"
csv.write_text("round,accuracy\\n1,0.5\\n2,0.6\\n3,0.7\\n")
Path(os.environ["FEDLIB_PROGRESS"]).write_text(json.dumps(
    {"sweep": "accuracy", "run": 2, "runs": 5, "finished": False, "started": time.time() - 5,
     "name": "acc-01", "rounds_total": 4, "rounds_csv": str(csv)}))
time.sleep(0.5)
"""


def test_describe(tmp_path):
    csv = tmp_path / "rounds.csv"
    csv.write_text("round\n1\n")
    info = {"sweep": "dp", "run": 1, "runs": 3, "rounds_total": 10, "rounds_csv": str(csv), "started": 0}
    assert reproduce.describe(info) == "dp: run 1/3, round 1/10"
    # a rounds.csv older than the run is a stale one from an earlier run of that name
    assert reproduce.describe({**info, "started": csv.stat().st_mtime + 60}) == "dp: run 1/3"
    assert reproduce.describe({**info, "finished": True}) == "dp: 3/3 runs done"


def test_reproduce_shows_and_records_inner_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce.Watcher, "POLL_S", 0.1)
    books, params = tmp_path / "nb", tmp_path / "params"
    books.mkdir()
    (params / "p").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = ''\nout_dir = ''"),
                                         nbformat.v4.new_code_cell(BODY)])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, books / "01_sweep.ipynb")
    (params / "p" / "01_sweep.yaml").write_text("profile: p\nout_dir: x\n")
    seen = []
    monkeypatch.setattr(reproduce.Watcher, "__init__", _spy(reproduce.Watcher.__init__, seen))
    table = reproduce.run("p", notebooks=books, out_root=tmp_path / "out", params=params)
    assert table["progress"].tolist() == ["accuracy: run 2/5, round 3/4"]
    assert "accuracy: run 2/5, round 3/4" in seen
    assert pd.read_csv(tmp_path / "out" / "p" / "reproduce_times.csv")["progress"].tolist() == [
        "accuracy: run 2/5, round 3/4"]
    assert json.loads((tmp_path / "out" / "p" / "01_sweep.progress.json").read_text())["run"] == 2


def _spy(init, seen):
    def wrapped(self, path, show):
        init(self, path, lambda text: (seen.append(text), show(text)))
    return wrapped
