"""`python -m fedlib run params/x.yaml [--set k=v ...] [--resume [auto] | --overwrite]` (also under mpiexec),
`python -m fedlib bench ...`, `python -m fedlib reproduce [--profile quick] [--nb NAME ...] [--out-root DIR]`,
`python -m fedlib record [--profile quick] [--check]`,
`python -m fedlib config-keys`, `python -m fedlib export RUN_DIR OUT [--adapter]`,
`python -m fedlib replay RUN_DIR` (a wall-clock run, from its arrivals.csv),
`python -m fedlib doctor [params/x.yaml]` (also under a launcher),
`python -m fedlib stopped params/x.yaml [--set k=v ...]` (a batch script, after a signalled launcher).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from . import config
from .engine import stop
from .hpc import launcher


def _resume_arg(args: argparse.Namespace) -> bool | str:
    """`--resume` (a checkpoint must be there), `--resume auto`, or neither. `run --resume x.yaml`
    means the file, not a resume mode."""
    if args.resume in (None, "auto", True):
        return args.resume or False
    if args.config is not None:
        raise config.ConfigError(f"--resume takes no value but auto, got {args.resume!r}")
    args.config = args.resume
    return True


def _interrupted(cfg: config.RunConfig) -> str:
    """The one line after Ctrl-C: where the run can continue from."""
    from .record import checkpoint

    kept = checkpoint.saved_round(cfg.run_dir)
    if kept is None:
        return f"fedlib: {cfg.name}: interrupted (Ctrl-C) before its first checkpoint; start it again"
    return (f"fedlib: {cfg.name}: interrupted (Ctrl-C); the checkpoint in {cfg.run_dir} keeps round {kept}; "
            f"{stop.CONTINUE}")


def _run(args: argparse.Namespace) -> int:
    from .hpc.mpilib import gtl_problem

    resume = _resume_arg(args)
    cfg = config.load(args.config, config.parse_overrides(args.set))
    if gtl := gtl_problem():  # before MPI_Init, which would exit without a word
        print(f"fedlib: error: {gtl}", file=sys.stderr)
        return stop.USAGE
    # torch and transformers (seconds) load once the config is valid: a bad one is told at once
    from .record.checkpoint import WriteError
    from .record.rundir import RunDirError
    from .runner import comm_for, run

    comm = comm_for(cfg)
    close = getattr(comm, "close", lambda: None)  # torch.distributed: tear the process group down
    try:
        result = run(cfg, comm=comm, resume=resume, progress=not args.quiet, overwrite=args.overwrite)
    except stop.Preempted as e:  # every rank agreed on it: a clean exit, no abort
        if comm.rank == 0:
            print(f"fedlib: {e}", file=sys.stderr, flush=True)
        close()
        return stop.PREEMPTED
    except KeyboardInterrupt:
        if comm.size > 1:
            comm.abort(stop.INTERRUPTED)
        print(_interrupted(cfg), file=sys.stderr, flush=True)
        return stop.INTERRUPTED
    except BaseException as e:
        if comm.size > 1:  # the other ranks may be blocked in a collective: end them all
            print(f"fedlib: rank {comm.rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            usage = isinstance(e, (config.ConfigError, ValueError, RunDirError))
            comm.abort(stop.DISK_FULL if isinstance(e, WriteError) else stop.USAGE if usage else stop.BUG)
        raise
    close()
    if result.summary:
        print(json.dumps(result.summary, indent=2))
        if result.summary.get("diverged"):
            print(f"fedlib: {cfg.name}: {result.summary['stopped']}", file=sys.stderr)
            return stop.DIVERGED
    return stop.OK


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    cfg = config.load(args.config, config.parse_overrides(args.set))
    return doctor.run(cfg.output_dir, cfg.threads, cfg=cfg)


def _stopped(args: argparse.Namespace) -> int:
    cfg = config.load(args.config, config.parse_overrides(args.set))
    code, line = stop.after_launcher(cfg.name, cfg.run_dir, args.wait)
    print(line, file=sys.stderr)
    return code


def _keys(_: argparse.Namespace) -> int:
    from .config.docs import table

    print(table(), end="")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .record.export import export_run

    print(export_run(args.run_dir, args.out, adapter=args.adapter))
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Redo a wall-clock run from the folder it wrote (config.yaml, arrivals.csv) and hold the
    model against its checkpoint: 0 when they agree within 1e-6, REPLAY_MISMATCH (5) when not; a
    log no run could have written is bad input (2, one line)."""
    from pathlib import Path

    from .engine import wall
    from .record import checkpoint

    run_dir = Path(args.run_dir)
    cfg = config.load(run_dir / "config.yaml")
    fed = cfg.federation
    if fed.mode == "sync" or fed.clock != "wall":
        raise config.ConfigError(f"{run_dir}: a {fed.mode} run on the {fed.clock} clock has no arrivals "
                                 "log; its config reproduces it (run it again): replay is for "
                                 "federation.clock: wall")
    log = run_dir / "arrivals.csv"
    if not log.is_file():
        raise FileNotFoundError(f"{log}: missing; a wall-clock run writes it as updates arrive")
    state = wall.replay(cfg, log)
    print(f"{run_dir}: replayed {state.round} server steps from {log.name}")
    if not (run_dir / checkpoint.FILE).is_file():
        print("no checkpoint.pt to hold the model against (federation.checkpoint_every: 0)")
        return 0
    saved, _ = checkpoint.load(run_dir)
    if saved.round != state.round:
        print(f"the checkpoint keeps step {saved.round}, the log ends at step {state.round}")
        return stop.REPLAY_MISMATCH
    gap = float((saved.weights - state.weights).abs().max())
    print(f"max |w_replay - w_checkpoint| = {gap:.3g} ({'the same model' if gap <= 1e-6 else 'DIFFERENT'})")
    return stop.OK if gap <= 1e-6 else stop.REPLAY_MISMATCH


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main(args)


def _reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .lab import reproduce

    where = {"out_root": Path(args.out_root)} if args.out_root else {}
    try:
        table = reproduce.run(args.profile, args.nb or None, reuse=not args.no_reuse, **where)
    except reproduce.NotebookFailed as e:
        print(f"fedlib reproduce: {e}", file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


def _record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .hpc.store import REPO_ROOT
    from .lab import page, stale

    out = Path(args.out_root or REPO_ROOT / "outputs") / args.profile
    if args.check:
        found = stale.problems(out)
        for line in found:
            print(f"fedlib record: stale: {line}", file=sys.stderr)
        print(f"{out}: the record is current" if not found else f"{out}: {len(found)} problem(s)")
        return 1 if found else 0
    if not (out / "provenance.json").is_file():
        raise FileNotFoundError(f"{out}: no record to render "
                                f"(run `python -m fedlib reproduce --profile {args.profile}`)")
    print(page.build(out))
    if args.profile != "quick" or args.out_root is not None:
        return 0
    changed = page.update_readme(out)
    print(f"README.md claims block {'updated' if changed else 'unchanged'}")
    from .lab import browser  # the committed record: read in a browser, its first screen kept

    if browser.find() is None:
        print(f"no browser check of the page: {browser.INSTALL}")
        return 0
    found = browser.problems(browser.measure(out / page.PAGE, screenshot=out / "index.png"))
    for line in found:
        print(f"fedlib record: the page reads badly: {line}", file=sys.stderr)
    tail = f"; {len(found)} problem(s)" if found else ""
    print(f"{out / 'index.png'}: the first screen at 1,400 px{tail}")
    return 1 if found else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fedlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or resume) a federated training job")
    r.add_argument("config", nargs="?", help="YAML file (params/*.yaml); defaults apply if omitted")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set federation.rounds=3 (repeatable)")
    r.add_argument("--resume", nargs="?", const=True, metavar="auto",
                   help="continue from outputs/<name>/checkpoint.pt; --resume auto: when there is one, "
                        "else start (requeued jobs)")
    r.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in outputs/<name>/ (else refused)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=_run)
    d = sub.add_parser("doctor", help="what fedlib sees here: launcher, MPI, devices, threads, caches")
    d.add_argument("config", nargs="?", help="YAML file whose output_dir/threads to check")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for run")
    d.set_defaults(fn=_doctor)
    s = sub.add_parser("stopped", help="after a launcher ended on the job's signal: wait for the run's "
                       "ranks, say where it stands (exit 75: continue with --resume auto)")
    s.add_argument("config", nargs="?", help="the run's YAML file, as given to run")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for run")
    s.add_argument("--resume", nargs="?", const=True, help=argparse.SUPPRESS)  # run's flags, ignored
    s.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the ranks (default 120)")
    s.set_defaults(fn=_stopped)
    k = sub.add_parser("config-keys", help="print every config key as a Markdown table")
    k.set_defaults(fn=_keys)
    e = sub.add_parser("export", help="write a run's global model as a Hugging Face folder")
    e.add_argument("run_dir", help="a run folder with checkpoint.pt (outputs/<name>)")
    e.add_argument("out", help="new folder for the model (from_pretrained loads it)")
    e.add_argument("--adapter", action="store_true", help="LoRA runs: the adapter alone (peft), not merged")
    e.set_defaults(fn=_export)
    rp = sub.add_parser("replay", help="redo a wall-clock run from its arrivals.csv, "
                        "then compare with its checkpoint")
    rp.add_argument("run_dir", help="the run's folder (outputs/<name>)")
    rp.set_defaults(fn=_replay)
    b = sub.add_parser("bench", help="system benchmarks writing CSV to outputs/bench/")
    b.add_argument("which", nargs="*", default=[], help="benchmarks to run (default: all)")
    b.add_argument("--out", default="outputs/bench", help="output folder")
    b.add_argument("--quick", action="store_true", help="smaller sizes for a fast check")
    b.set_defaults(fn=_bench)
    m = sub.add_parser("reproduce", help="execute the notebooks into outputs/<profile>/ (papermill)")
    m.add_argument("--profile", default="quick", help="parameter set under params/ (quick, full)")
    m.add_argument("--nb", action="append", default=[], help="only this notebook (repeatable)")
    m.add_argument("--no-reuse", action="store_true",
                   help="rerun every run (default: reuse a run whose config, ranks and fedlib source "
                        "match one in outputs/<profile>/run_cache/)")
    m.add_argument("--out-root", default=None,
                   help="write <out-root>/<profile>/ instead of outputs/<profile>/ (tests, scratch)")
    m.set_defaults(fn=_reproduce)
    h = sub.add_parser("record", help="outputs/<profile>/index.html from the executed notebooks "
                       "(quick: and README's claims table)")
    h.add_argument("--profile", default="quick", help="which outputs/<profile>/ (default quick)")
    h.add_argument("--out-root", default=None, help="instead of outputs/ (README is then left alone)")
    h.add_argument("--check", action="store_true", help="exit 1 listing why the record is stale (else 0)")
    h.set_defaults(fn=_record)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 bad input, 3 world-size mismatch, 4 diverged, 5 `replay` gave a
    model other than the checkpoint's, 74 a write the file system refused (disk full, quota), 75
    preempted (checkpointed; --resume auto continues), 130 Ctrl-C; 1 anything else (a bug: the
    traceback is shown)."""
    from .record.rundir import RunDirError

    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except config.ConfigError as e:
        print(f"fedlib: config error: {e}", file=sys.stderr)
        return stop.USAGE
    except (FileNotFoundError, ValueError, RunDirError) as e:
        print(f"fedlib: error: {e}", file=sys.stderr)
        return stop.USAGE
    except launcher.WorldMismatch as e:
        print(f"fedlib: error: {e}", file=sys.stderr)
        return stop.WORLD_MISMATCH
    except OSError as e:
        from .record.checkpoint import WriteError  # here, not above: it imports torch (seconds)

        if isinstance(e, WriteError):
            print(f"fedlib: error: {e}", file=sys.stderr)
            return stop.DISK_FULL
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"fedlib: error: {e.filename or ''}: {os.strerror(e.errno)} (the file system is full "
              "or over quota)", file=sys.stderr)
        return stop.DISK_FULL
    except KeyboardInterrupt:
        print("fedlib: interrupted (Ctrl-C)", file=sys.stderr)
        return stop.INTERRUPTED
