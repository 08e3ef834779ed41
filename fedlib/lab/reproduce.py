"""`python -m fedlib reproduce`: execute the notebooks with papermill into outputs/<profile>/
(executed .ipynb + HTML; the notebooks themselves write PNG and CSV there), the summary
notebook last. Stops at the first failing notebook, naming it and the failing cell; notebooks
already executed stay where they are. `provenance.json` there records the code and library
versions, host and times of the invocation; each run's own provenance is in its summary.json
and in the sweep tables (`prov_*` columns, `run_dir`). Every sweep writes its runs into a fresh
timestamped folder under `runs/`, so reproducing again never collides with earlier runs.
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml
from tqdm.auto import tqdm

from .. import provenance
from ..data import REPO_ROOT
from ..metrics import write_json

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

    try:
        pm.execute_notebook(str(src), str(dest), parameters=params, cwd=str(src.parent),
                            kernel_name="python3", progress_bar=False, log_output=False)
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
        t0, status = time.perf_counter(), "failed"
        try:
            execute(notebooks / f"{name}.ipynb", out / f"{name}.ipynb", values)
            status = "ok"
        finally:
            rows.append({"notebook": name, "seconds": round(time.perf_counter() - t0, 1), "status": status})
            pd.DataFrame(rows).to_csv(out / "reproduce_times.csv", index=False)
            write_json(out / "provenance.json", {**prov, "ended": provenance.utc_now(), "status": rows})
    return pd.DataFrame(rows)
