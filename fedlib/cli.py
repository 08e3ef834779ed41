"""`python -m fedlib run params/x.yaml [--set k=v ...] [--resume]` (also under mpiexec),
`python -m fedlib bench ...`, `python -m fedlib reproduce [--profile quick] [--nb NAME ...]`,
`python -m fedlib config-keys`.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import config


def _run(args: argparse.Namespace) -> int:
    from .runner import comm_for, run

    cfg = config.load(args.config, config.parse_overrides(args.set))
    comm = comm_for(cfg)
    try:
        result = run(cfg, comm=comm, resume=args.resume, progress=not args.quiet)
    except BaseException as e:
        if comm.size > 1:  # the other ranks may be blocked in a collective: end them all
            print(f"fedlib: rank {comm.rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            comm.abort(2 if isinstance(e, (config.ConfigError, ValueError)) else 1)
        raise
    getattr(comm, "close", lambda: None)()  # torch.distributed: tear the process group down
    if result.summary:
        print(json.dumps(result.summary, indent=2))
    return 0


def _keys(_: argparse.Namespace) -> int:
    from .docs import table

    print(table(), end="")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main(args)


def _reproduce(args: argparse.Namespace) -> int:
    from .lab import reproduce

    try:
        table = reproduce.run(args.profile, args.nb or None)
    except reproduce.NotebookFailed as e:
        print(f"fedlib reproduce: {e}", file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fedlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or resume) a federated training job")
    r.add_argument("config", nargs="?", help="YAML file (params/*.yaml); defaults apply if omitted")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set federation.rounds=3 (repeatable)")
    r.add_argument("--resume", action="store_true", help="continue from outputs/<name>/checkpoint.pt")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=_run)
    k = sub.add_parser("config-keys", help="print every config key as a Markdown table")
    k.set_defaults(fn=_keys)
    b = sub.add_parser("bench", help="system benchmarks writing CSV to outputs/bench/")
    b.add_argument("which", nargs="*", default=[], help="benchmarks to run (default: all)")
    b.add_argument("--out", default="outputs/bench", help="output folder")
    b.add_argument("--quick", action="store_true", help="smaller sizes for a fast check")
    b.set_defaults(fn=_bench)
    m = sub.add_parser("reproduce", help="execute the notebooks into outputs/<profile>/ (papermill)")
    m.add_argument("--profile", default="quick", help="parameter set under params/ (quick, full)")
    m.add_argument("--nb", action="append", default=[], help="only this notebook (repeatable)")
    m.set_defaults(fn=_reproduce)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except config.ConfigError as e:
        print(f"fedlib: config error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"fedlib: error: {e}", file=sys.stderr)
        return 2
