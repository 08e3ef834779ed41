"""Run a grid of configurations and collect one tidy row per run: what notebooks plot and
benchmarks write. The runner is pluggable (in-process, or on ipyparallel engines)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .. import config, runner
from ..hpc.store import atomic_write
from ..learn import data
from ..record.metrics import PHASES
from . import runcache

RunFn = Callable[[config.RunConfig], runner.Result]


# What each algorithm needs besides its name for a fair comparison in a sweep.
ALGORITHM_DEFAULTS: dict[str, dict[str, Any]] = {
    "fedavg": {}, "fedprox": {"client.mu": 0.01}, "fedavgm": {"strategy.server_lr": 1.0},
    "fedadam": {"strategy.server_lr": 1e-3}, "fedyogi": {"strategy.server_lr": 1e-3},
    "fedadagrad": {"strategy.server_lr": 1e-3},
}


def algorithm(name: str) -> dict[str, Any]:
    """Overrides selecting algorithm `name` with its sweep defaults."""
    return {"strategy.algorithm": name, **ALGORITHM_DEFAULTS[name]}


def local_run(cfg: config.RunConfig) -> runner.Result:
    return runner.run(cfg, progress=False)


def summarize(cfg: config.RunConfig, res: runner.Result, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings + summary + per-round means (round 1, the warm-up, left out when there are more),
    the run's folder, the round a diverged run broke in (else None) and its provenance
    (flattened as `prov_<key>`)."""
    r = res.rounds.iloc[1:] if len(res.rounds) > 1 else res.rounds
    c = res.clients
    row: dict[str, Any] = {**settings, **{k: v for k, v in res.summary.items() if not isinstance(v, dict)}}
    row["run_dir"] = str(cfg.run_dir)
    row["diverged_round"] = res.summary.get("diverged_round", {}).get("round")  # the round it broke in
    row.update({f"prov_{k}": ",".join(map(str, v)) if isinstance(v, list) else v
                for k, v in res.summary.get("provenance", {}).items()})
    row.update({f"{p}_s": float(r[f"{p}_s"].mean()) for p in PHASES})
    row.update({
        "round_s": float(r["round_s"].mean()), "comm_wait_s": float((r["comm_s"] + r["wait_s"]).mean()),
        "wait_max_s": float(r["wait_max_s"].mean()), "bytes_per_round": float(r["bytes_comm"].mean()),
        "payload_bytes": int(r["payload_bytes"].iloc[0]) if len(r) else 0,
        "aggregated_mean": float(res.rounds["aggregated"].mean()),
        "dropped": int(res.rounds["dropped"].sum()), "late": int(res.rounds["late"].sum()),
        "sim_round_s": float(r["sim_round_s"].mean()), "sim_wait_s": float(r["sim_wait_s"].mean()),
        "step_s": float((c["compute_s"] / c["steps"]).mean()) if len(c) else float("nan"),
        "clients": cfg.federation.num_clients, "model": cfg.model.name, "data": cfg.data.name,
        "algorithm": cfg.strategy.algorithm, "aggregation": cfg.federation.aggregation,
    })
    return row


def slug(text: str) -> str:
    """A folder name for `text`: safe characters, long ones shortened with a hash."""
    s = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "run"
    return s if len(s) <= 80 else f"{s[:70]}-{hashlib.sha1(s.encode()).hexdigest()[:8]}"


def fresh_dir(root: str | Path, name: str) -> Path:
    """A new folder `root/<name>-<UTC time>[-k]` (created exclusively), so that a rerun of a
    sweep or notebook never touches an earlier one's runs."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    Path(root).mkdir(parents=True, exist_ok=True)
    for k in range(1000):
        p = Path(root) / slug(f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
    raise RuntimeError(f"{root}: no fresh folder for {name!r}")  # pragma: no cover


def run_grid(base: config.RunConfig, grid: Sequence[Mapping[str, Any]], run: RunFn | None = None,
             progress: bool = True, desc: str = "runs", seeds: Sequence[int] | None = None,
             export: Export = False, ranks: int = 1) -> pd.DataFrame:
    """One row per grid entry and seed. An entry is dotted overrides plus optional plain keys (no
    dot) that only label the row, e.g. ``{"axis": "dropout", "participation.dropout": 0.2}``.
    With `seeds`, every entry runs once per seed (run names end in ``seed<s>``); every row
    carries its `seed` and `trainable` part, what the error bars and the claims table group by.
    The runs go to a fresh folder `<output_dir>/<base.name>-<UTC time>/` (see `fresh_dir`).

    `export` (see `Export`): which runs write their model as a Hugging Face folder. None by
    default — a sweep's models are read by nobody, and a bert-base export is 440 MB, so a 324-run
    sweep would fill a quota — and never a random-init preset's.

    Under `fedlib reproduce` (`runcache.ENV` set) a run whose key — resolved config, `ranks` that
    run it, fedlib source — has a cached entry is not run again: its row is the cached one (its
    `run_dir` the folder of the run that made it) with `reused` True; a run that exports is never
    reused."""
    run = run or local_run
    check_export(export, len(grid))
    base = config.replace(base, **toy_overrides(), output_dir=str(fresh_dir(base.output_dir, base.name)))
    entry_of = [j for j in range(len(grid)) for _ in (seeds if seeds is not None else [None])]
    grid = with_seeds(grid, seeds)
    rows: list[dict[str, Any]] = []
    store = runcache.Store.from_env()
    best: dict[int, int] = {}  # export="best": grid entry -> the row holding its kept export
    for i, entry in enumerate(tqdm(grid, desc=desc, disable=not progress, unit="run")):
        labels = {k: v for k, v in entry.items() if "." not in k and k != "seed"}
        over = {k: v for k, v in entry.items() if "." in k or k == "seed"}
        name = slug(f"{base.name}-{i:02d}-" + "-".join(
            f"seed{v}" if k == "seed" else str(v) for k, v in entry.items()))
        cfg = config.replace(base, name=name, **over)
        cfg = config.replace(cfg, **{"federation.export": wants_export(export, entry_of[i], cfg)})
        report_progress(desc, i, len(grid), cfg)
        k = runcache.key(cfg, ranks) if store is not None and not cfg.federation.export else None
        hit = store.get(k) if store is not None and k is not None else None
        if hit is None:
            t0 = time.perf_counter()
            made = summarize(cfg, run(cfg), {})
            seconds = time.perf_counter() - t0
            drop_residuals(cfg)
            if store is not None and k is not None:
                store.put(k, made, cfg, seconds)
        else:
            made, seconds = hit["row"], float(hit["seconds"])
        runcache.log(desc, cfg.name, hit is not None, seconds, str(made["run_dir"]))
        rows.append({**labels, **over, **budget(cfg), **made, "reused": hit is not None})
        rows[-1]["exported"] = exported(cfg)
        if export == "best" and rows[-1]["exported"]:
            keep_best(rows, best, entry_of[i], len(rows) - 1)
    report_progress(desc, len(grid), len(grid), None)
    return pd.DataFrame(rows)


# True: every run (random-init presets excepted); "best": per grid entry, the seed with the best
# final accuracy; a list: the grid entries (0-based, before seeds) whose runs export; False: none.
Export = bool | str | Sequence[int]


def check_export(export: Export, entries: int) -> None:
    if isinstance(export, bool) or export == "best":
        return
    if isinstance(export, str) or not all(isinstance(j, int) and 0 <= j < entries for j in export):
        raise ValueError(f"export={export!r}: give False, True, 'best' or a list of grid entry "
                         f"indices in 0..{entries - 1}")


def wants_export(export: Export, entry: int, cfg: config.RunConfig) -> bool:
    """Whether this run exports. A random-init preset never does: its weights only time things."""
    from ..learn.models import locate

    if locate(cfg.model.name).kind == "preset":
        return False
    if isinstance(export, bool) or export == "best":
        return bool(export)
    return entry in export


def exported(cfg: config.RunConfig) -> str | None:
    """The run's exported model folder, or None (not asked, or the run could not export)."""
    from ..record.export import FOLDER

    folder = cfg.run_dir / FOLDER
    return str(folder) if cfg.federation.export and folder.is_dir() else None


def drop_residuals(cfg: config.RunConfig) -> None:
    """Error feedback leaves one model-sized residual file per client (bert-base at 96 clients:
    42 GB); without a checkpoint no resume can read them, so a sweep deletes them when the run ends."""
    import shutil

    if cfg.federation.error_feedback and not cfg.federation.checkpoint_every:
        shutil.rmtree(cfg.run_dir / "residuals", ignore_errors=True)


def keep_best(rows: list[dict[str, Any]], best: dict[int, int], entry: int, new: int) -> None:
    """Keep one export per grid entry: the newest run's if its accuracy beats the kept one's (the
    first seed wins ties), else its own is deleted; at most two exports exist at any time."""
    import shutil

    old = best.get(entry)
    acc = rows[new].get("accuracy")
    if old is not None and not (acc is not None and acc > (rows[old].get("accuracy") or float("-inf"))):
        shutil.rmtree(rows[new]["exported"])
        rows[new]["exported"] = None
        return
    if old is not None:
        shutil.rmtree(rows[old]["exported"])
        rows[old]["exported"] = None
    best[entry] = new


def with_seeds(grid: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None) -> list[dict[str, Any]]:
    """Every entry once per seed, seeds innermost (so a cut-short sweep has whole groups)."""
    if seeds is None:
        return [dict(e) for e in grid]
    if not len(seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {list(seeds)}: give one or more distinct seeds")
    return [{**e, "seed": int(s)} for e in grid for s in seeds]


def budget(cfg: config.RunConfig) -> dict[str, Any]:
    """What a claim's row names besides clients and rounds (`fedlib.lab.claims`): the seed, what
    trained and whether its frozen part was cached, the workload of a client's round (local steps
    or epochs, batch, tokens), the evaluation examples of how many in the split, and δ of a DP run."""
    m = cfg.model
    k = m.frozen  # None, a number of lower layers (embeddings included), or "all"
    trainable = (f"LoRA r{m.lora_r}" if m.lora_r else "full" if k is None
                 else "head" if k == "all" else "all but embeddings" if k == 0 else f"layers above {k}")
    split = _split_size(cfg.data)
    cap = cfg.data.max_eval_samples
    return {"seed": cfg.seed, "trainable": trainable, "cached_features": bool(m.cache_features),
            "local_steps": cfg.client.local_steps, "local_epochs": cfg.client.local_epochs,
            "batch_size": cfg.client.batch_size, "max_length": cfg.data.max_length,
            "eval_examples": split if cap is None else cap if split is None else min(cap, split),
            "eval_split_size": split, "delta": None if cfg.privacy.mode == "none" else cfg.privacy.delta}


def _split_size(d: config.DataConfig) -> int | None:
    """Examples in the evaluation split of a local data set (its JSONL lines); None for a hub id."""
    folder = data.resolve(d.name, d.subset)
    path = folder / f"{d.eval_split}.jsonl" if folder is not None else None
    if path is None or not path.is_file():
        return None
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


# A toy profile (params/smoke/toy.yaml, set by `fedlib reproduce`): dotted overrides applied to
# every sweep's base before its grid, so the grid, its axes and every code path after it are the
# full profile's while the model and data shrink (a grid's own `model.name` axis still wins).
TOY_ENV = "FEDLIB_TOY"


def toy_overrides() -> dict[str, Any]:
    text = os.environ.get(TOY_ENV)
    return dict(json.loads(text)) if text else {}


# `make reproduce` sets this to a JSON file it polls: which run of which sweep is running, and
# where its rounds.csv grows (one line per round), so a notebook that runs for hours shows more
# than one bar. Unset (a notebook opened by hand): nothing is written.
PROGRESS_ENV = "FEDLIB_PROGRESS"


def report_progress(desc: str, done: int, total: int, cfg: config.RunConfig | None) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    info = {"sweep": desc, "run": min(done + 1, total), "runs": total, "finished": cfg is None,
            "started": time.time()}
    if cfg is not None:
        info.update(name=cfg.name, rounds_total=cfg.federation.rounds,
                    rounds_csv=str((cfg.run_dir / "rounds.csv").resolve()))
    atomic_write(Path(path), json.dumps(info))  # the poller never reads half a file
