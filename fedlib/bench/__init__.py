"""System benchmarks: `python -m fedlib bench [name ...] [--quick] [--out outputs/bench]`.

Each benchmark is a module here with `run(out: Path, quick: bool) -> pandas.DataFrame`; it
writes `<out>/<name>.csv` and returns the rows. Targets are ratios measured within one run
(this machine is noisy), never absolute seconds.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

BENCHES: dict[str, str] = {
    "overhead": "fedlib.bench.overhead",
    "clients": "fedlib.bench.clients",
    "scale": "fedlib.bench.scale",
    "accuracy": "fedlib.bench.accuracy",
    "axes": "fedlib.bench.axes",
    "system": "fedlib.bench.system",
    "backends": "fedlib.bench.backends",
    "privacy": "fedlib.bench.privacy",
    "async": "fedlib.bench.asyncwall",
    "comm": "fedlib.bench.comm",
}


def main(args: argparse.Namespace) -> int:
    names = args.which or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        df = importlib.import_module(BENCHES[name]).run(out, quick=args.quick)
        df.to_csv(out / f"{name}.csv", index=False)
        print(f"== {name} -> {out / (name + '.csv')}")
        print(df.to_string(index=False))
    return 0
