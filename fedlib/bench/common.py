"""Shared by the benchmarks: run a config in a fresh process (optionally under mpiexec) and
read back its rows and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..wire.comm import LAUNCH_ENV

_PEAK = (
    "import resource, runpy, sys, json\n"
    "sys.argv = ['fedlib'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('fedlib', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    if e.code: raise\n"
    "finally:\n"
    "    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    print('PEAK_RSS_KB', json.dumps(rss), flush=True)\n"
)


def overrides_args(over: dict[str, Any]) -> list[str]:
    return [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def run(over: dict[str, Any], ranks: int = 1, timeout: int = 3600) -> tuple[pd.DataFrame, list[int]]:
    """Run `python -m fedlib run` with dotted overrides on `ranks` MPI ranks (1 = no MPI).

    Returns rank 0's rounds.csv and every rank's peak RSS in KiB."""
    over = {"federation.export": False, **over}  # a benchmark's model is read by nobody
    args = ["-c", _PEAK, "run", *overrides_args(over), "--quiet"]
    cmd = [sys.executable, *args]
    if ranks > 1:
        cmd = [str(Path(sys.executable).with_name("mpiexec")), "-n", str(ranks), *cmd]
    env = {**os.environ, **{k: v for k, v in LAUNCH_ENV.items() if k not in os.environ}}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    peaks = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    run_dir = Path(str(over["output_dir"])) / str(over["name"])
    return pd.read_csv(run_dir / "rounds.csv"), peaks
