"""Run a grid of configurations and collect one tidy row per run: what notebooks plot and
benchmarks write. The runner is pluggable (in-process, or on ipyparallel engines)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .. import config, runner
from ..metrics import PHASES

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
    the run's folder and its provenance (flattened as `prov_<key>`)."""
    r = res.rounds.iloc[1:] if len(res.rounds) > 1 else res.rounds
    c = res.clients
    row: dict[str, Any] = {**settings, **{k: v for k, v in res.summary.items() if not isinstance(v, dict)}}
    row["run_dir"] = str(cfg.run_dir)
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
        "clients": cfg.federation.num_clients, "model": cfg.model.name,
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
             progress: bool = True, desc: str = "runs") -> pd.DataFrame:
    """One row per grid entry. An entry is dotted overrides plus optional plain keys (no dot)
    that only label the row, e.g. ``{"axis": "dropout", "participation.dropout": 0.2}``.
    The runs go to a fresh folder `<output_dir>/<base.name>-<UTC time>/` (see `fresh_dir`)."""
    run = run or local_run
    base = config.replace(base, output_dir=str(fresh_dir(base.output_dir, base.name)))
    rows = []
    for i, entry in enumerate(tqdm(grid, desc=desc, disable=not progress, unit="run")):
        labels = {k: v for k, v in entry.items() if "." not in k}
        over = {k: v for k, v in entry.items() if "." in k}
        name = slug(f"{base.name}-{i:02d}-" + "-".join(str(v) for v in entry.values()))
        cfg = config.replace(base, name=name, **over)
        rows.append(summarize(cfg, run(cfg), {**labels, **over}))
    return pd.DataFrame(rows)
