"""`python -m fedlib reproduce`: execute the notebooks with papermill into outputs/<profile>/
(executed .ipynb + HTML; the notebooks themselves write PNG and CSV there), the summary
notebook last. Stops at the first failing notebook, naming it and the failing cell; notebooks
already executed stay where they are. `provenance.json` there records the code and library
versions, host and times of the invocation; each run's own provenance is in its summary.json
and in the sweep tables (`prov_*` columns, `run_dir`). Every sweep writes its runs into a fresh
timestamped folder under `runs/`, and a notebook's earlier outputs move to `history/<time>/`
before it runs again, so reproducing again never replaces an earlier record. At the end,
`index.html` there is the whole record on one page (`record.build`).

Runs are reused (`runcache`): a sweep's run whose resolved config, ranks and fedlib source match
a run of an earlier invocation (or of an earlier notebook of this one: the IID reference that 02,
03 and 04 share) is not run again. The cache is `<out>/run_cache/`; each notebook's runs, made
or reused, are listed in `<out>/<notebook>.runs.jsonl`; the invocation prints and records
(`reproduce_times.csv`: `runs`, `reused`) how many it reused. `reuse=False` (`--no-reuse`)
reruns everything (the cache is then neither read nor written).
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

from ..hpc.store import REPO_ROOT
from ..record import provenance
from ..record.metrics import write_json
from . import disk, runcache
from .books import NOTEBOOKS, PARAMS, available, parameters
from .sweep import PROGRESS_ENV, TOY_ENV


class NotebookFailed(RuntimeError):
    pass


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
        out_root: Path = REPO_ROOT / "outputs", params: Path = PARAMS, reuse: bool = True) -> pd.DataFrame:
    """Execute `names` (default: all, summary last); returns one row per notebook executed, with
    how many runs its sweeps made and how many of them were reused from the run cache."""
    names = names or available(notebooks)
    out = out_root / profile
    out.mkdir(parents=True, exist_ok=True)
    since = time.time()
    if profile == "full":  # hours of sweeps: say what they will write before the first one
        print(estimate_line(profile, names, params, out), flush=True)
    prov = {**provenance.software(), "hosts": [socket.gethostname()], "profile": profile,
            "notebooks": names, "started": provenance.utc_now(), "ended": None}
    write_json(out / "provenance.json", prov)
    toy = prepare(profile, params, out)
    rows = []
    for name in (bar := tqdm(names, desc=f"reproduce ({profile})", unit="notebook")):
        bar.set_postfix_str(name)
        values = {**expand(parameters(profile, name, params), out), "profile": profile, "out_dir": str(out)}
        archive(out, name, prov["started"])
        t0, status = time.perf_counter(), "failed"
        watch = Watcher(out / f"{name}.progress.json",
                        lambda text, n=name: bar.set_postfix_str(f"{n} · {text}"))
        runs_log = out / f"{name}.runs.jsonl"
        runs_log.unlink(missing_ok=True)
        try:
            with (watch, environ(TOY_ENV, json.dumps(toy) if toy else None),
                  environ(runcache.ENV, str(out / CACHE) if reuse else None),
                  environ(runcache.LOG_ENV, str(runs_log))):
                execute(notebooks / f"{name}.ipynb", out / f"{name}.ipynb", values)
            status = "ok"
        finally:
            made, reused, saved = runcache.tally(runs_log)
            rows.append({"notebook": name, "seconds": round(time.perf_counter() - t0, 1), "status": status,
                         "runs": made, "reused": reused, "progress": watch.last})
            if made:
                tqdm.write(f"{name}: {made} runs, {reused} reused from {out / CACHE}"
                           + (f" (they took {saved:.0f} s when they ran)" if reused else ""))
            pd.DataFrame(rows).to_csv(out / "reproduce_times.csv", index=False)
            wrote = disk.used(out, since)
            write_json(out / "provenance.json", {**prov, "ended": provenance.utc_now(), "status": rows,
                                                 "disk_bytes": wrote})
    total, again = sum(r["runs"] for r in rows), sum(r["reused"] for r in rows)
    print(f"reproduce ({profile}): wrote {disk.human(wrote)} into {out} "
          f"({len(rows)} notebooks, {sum(r['seconds'] for r in rows) / 60:.1f} min; "
          f"{total} runs, {again} of them reused)", flush=True)
    from .page import build  # the one-page record of everything `out` now holds

    build(out, notebooks)
    return pd.DataFrame(rows)


CACHE = "run_cache"  # <out>/run_cache/: the runs `runcache` may reuse
TOY = "toy.yaml"  # params/<profile>/toy.yaml: a toy profile's models and overrides (params/smoke)
OUT = "<out>"  # in a profile's values: the absolute output folder (tiny checkpoints: <out>/models/)


def prepare(profile: str, params: Path, out: Path) -> dict:
    """A toy profile: build its tiny local checkpoints (`tiny_checkpoints`: families, laid out as
    the study's models ship: fedlib.learn.tiny) into
    `<out>/models/<family>` once, and return its `overrides` for every sweep (`sweep.TOY_ENV`)."""
    path = params / profile / TOY
    if not path.is_file():
        return {}
    spec = yaml.safe_load(path.read_text()) or {}
    families = spec.get("tiny_checkpoints", [])
    if families:
        from ..learn import tiny as tc
        models = out / "models"
        vocab = {"bert": lambda: tc.wordpiece_vocab(models / "_wordpiece"),
                 "albert": lambda: tc.sentencepiece_model(models / "_sentencepiece")}
        for family in families:
            if not (models / family / "config.json").is_file():
                make = vocab["bert" if family == "bert" else "albert"]
                tc.checkpoint(models / family, family, make())
    return expand(spec.get("overrides", {}), out)


def expand(values: dict, out: Path) -> dict:
    """`<out>` in any string value (nested too) -> the profile's absolute output folder, so a
    toy profile names its checkpoints and a benchmark folder wherever `--out`/the test puts it."""
    def go(v):  # noqa: ANN001, ANN202 - YAML values of any type
        if isinstance(v, str):
            return v.replace(OUT, str(out.resolve()))
        if isinstance(v, list):
            return [go(x) for x in v]
        return {k: go(x) for k, x in v.items()} if isinstance(v, dict) else v
    return {k: go(v) for k, v in values.items()}


class environ:
    """Set (or, with None, leave unset) one environment variable for a `with` block: the kernel
    papermill starts inherits it."""

    def __init__(self, key: str, value: str | None) -> None:
        self.key, self.value, self.old = key, value, os.environ.get(key)

    def __enter__(self) -> None:
        if self.value is not None:
            os.environ[self.key] = self.value

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop(self.key, None)
        else:
            os.environ[self.key] = self.old


def estimate_line(profile: str, names: list[str], params: Path, out: Path) -> str:
    """The size model's forecast (fedlib.lab.disk) against the free space where it will write."""
    import shutil

    runs, total, peak = disk.estimate(profile, names, params)
    free = shutil.disk_usage(out).free
    line = (f"reproduce ({profile}): {runs} runs will write about {disk.human(total)} into {out} "
            f"(the largest run holds up to {disk.human(peak)} while it runs); {disk.human(free)} free there")
    return line + (" — NOT ENOUGH" if total + peak > free else "")


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
