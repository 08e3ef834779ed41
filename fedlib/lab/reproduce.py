"""`python -m fedlib reproduce`: execute the notebooks with papermill into outputs/<profile>/
(executed .ipynb + HTML; the notebooks themselves write PNG and CSV there), the summary
notebook last. Stops at the first failing notebook, naming it and the failing cell; notebooks
already executed stay where they are. `provenance.json` there records the code and library
versions, host and times of the invocation; each run's own provenance is in its summary.json
and in the sweep tables (`prov_*` columns, `run_dir`). Every sweep writes its runs into a fresh
timestamped folder under `runs/`, and a notebook's earlier outputs move to `history/<time>/`
before it runs again, so reproducing again never replaces an earlier record. At the end,
`index.html` there is the whole record on one page (`record.build`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from .. import provenance
from ..data import REPO_ROOT
from ..metrics import write_json
from .sweep import PROGRESS_ENV

NOTEBOOKS = REPO_ROOT / "notebooks"
PARAMS = REPO_ROOT / "params"
SUMMARY = "99_summary"


class NotebookFailed(RuntimeError):
    pass


def available(notebooks: Path = NOTEBOOKS) -> list[str]:
    names = sorted(p.stem for p in notebooks.glob("[0-9][0-9]_*.ipynb"))
    return [n for n in names if n != SUMMARY] + ([SUMMARY] if SUMMARY in names else [])


def parameters(profile: str, name: str, params: Path = PARAMS) -> dict:
    path = params / profile / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no parameters for notebook {name} in profile {profile!r}")
    return yaml.safe_load(path.read_text()) or {}


def execute(src: Path, dest: Path, params: dict) -> None:
    """Run one notebook; raises NotebookFailed naming the notebook and the failing cell."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    from .kernel import papermill_kwargs as ipc_kernels  # shared nodes: no kernel on TCP

    try:
        pm.execute_notebook(str(src), str(dest), parameters=params, cwd=str(src.parent),
                            kernel_name="python3", progress_bar=False, log_output=False, **ipc_kernels())
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"notebook {src.stem} failed in cell {e.exec_count} (index {e.cell_index}): "
                             f"{e.ename}: {e.evalue}\n  executed copy with the traceback: {dest}") from None
    finally:
        if dest.is_file():
            with warnings.catch_warnings():  # scrapbook's records have no HTML form: skipped
                warnings.filterwarnings("ignore", message="Your element with mimetype")
                html, _ = HTMLExporter().from_notebook_node(nbformat.read(dest, as_version=4))
            dest.with_suffix(".html").write_text(html)


def run(profile: str = "quick", names: list[str] | None = None, notebooks: Path = NOTEBOOKS,
        out_root: Path = REPO_ROOT / "outputs", params: Path = PARAMS) -> pd.DataFrame:
    """Execute `names` (default: all, summary last); returns one row per notebook executed."""
    names = names or available(notebooks)
    out = out_root / profile
    out.mkdir(parents=True, exist_ok=True)
    prov = {**provenance.software(), "hosts": [socket.gethostname()], "profile": profile,
            "notebooks": names, "started": provenance.utc_now(), "ended": None}
    write_json(out / "provenance.json", prov)
    rows = []
    for name in (bar := tqdm(names, desc=f"reproduce ({profile})", unit="notebook")):
        bar.set_postfix_str(name)
        values = {**parameters(profile, name, params), "profile": profile, "out_dir": str(out)}
        archive(out, name, prov["started"])
        t0, status = time.perf_counter(), "failed"
        watch = Watcher(out / f"{name}.progress.json",
                        lambda text, n=name: bar.set_postfix_str(f"{n} · {text}"))
        try:
            with watch:
                execute(notebooks / f"{name}.ipynb", out / f"{name}.ipynb", values)
            status = "ok"
        finally:
            rows.append({"notebook": name, "seconds": round(time.perf_counter() - t0, 1), "status": status,
                         "progress": watch.last})
            pd.DataFrame(rows).to_csv(out / "reproduce_times.csv", index=False)
            write_json(out / "provenance.json", {**prov, "ended": provenance.utc_now(), "status": rows})
    from .record import build  # the one-page record of everything `out` now holds

    build(out, notebooks)
    return pd.DataFrame(rows)


def archive(out: Path, name: str, stamp: str) -> list[Path]:
    """Move what an earlier reproduce left for notebook `name` (its executed copy, HTML, CSVs,
    PNGs: files named `<name>*`) into `history/<stamp>/`, so a rerun replaces nothing: the
    newest record stays where 99_summary reads it, every earlier one beside it."""
    old = [f for f in out.glob(f"{name}*") if f.is_file()]
    if old:
        dest = out / "history" / stamp.replace(":", "")
        dest.mkdir(parents=True, exist_ok=True)
        for f in old:
            f.replace(dest / f.name)
    return old


def describe(info: dict) -> str:
    """One line for a sweep's progress file: ``<sweep>: run i/n, round r/R``."""
    if info.get("finished"):
        return f"{info['sweep']}: {info['runs']}/{info['runs']} runs done"
    text = f"{info['sweep']}: run {info['run']}/{info['runs']}"
    csv = Path(info.get("rounds_csv") or "")
    if info.get("rounds_total") and csv.is_file() and csv.stat().st_mtime >= info.get("started", 0) - 1:
        with open(csv) as f:
            done = max(sum(1 for _ in f) - 1, 0)  # header, then one line per finished round
        text += f", round {min(done, info['rounds_total'])}/{info['rounds_total']}"
    return text


class Watcher:
    """While a notebook runs, poll the progress file its sweeps write (`FEDLIB_PROGRESS`, set for
    the kernel) and hand each new line to `show`; `last` keeps the final one for the record."""

    POLL_S = 2.0

    def __init__(self, path: Path, show) -> None:  # noqa: ANN001 - any callable taking a str
        self.path, self.show, self.last = path, show, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._env: str | None = None

    def poll(self) -> None:
        try:
            text = describe(json.loads(self.path.read_text()))
        except (OSError, ValueError, KeyError):
            return  # not written yet (or a notebook without sweeps)
        if text != self.last:
            self.last = text
            self.show(text)

    def _loop(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self.poll()

    def __enter__(self) -> Watcher:
        self.path.unlink(missing_ok=True)
        self._env = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(self.path)  # the kernel papermill starts inherits it
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        if self._env is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = self._env
