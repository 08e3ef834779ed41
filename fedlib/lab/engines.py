"""Where a notebook's federated runs execute.

``mpi``: ipyparallel engines launched with mpiexec, one engine per MPI rank; every engine
runs ``fedlib.runner.run`` with the MPI comm and rank 0's tables come back to the notebook.
``connect``: attach to engines someone else started (the Slurm/PBS recipes in ``cluster/``),
leave them running afterwards. ``local``: in this process, no MPI.

    with engines.start("mpi", n=2) as pool:
        result = pool.run(cfg)                  # runner.Result (tables + summary)
        table = pool.sweep(cfg, grid)           # one row per run (fedlib.lab.sweep)

Engines stop when the block exits, also when a cell fails; an engine's error is re-raised
here naming the engine and its original exception. The environment variables
``FEDLIB_ENGINES`` (mode) and ``FEDLIB_IPP_PROFILE`` override what a notebook asks for, so a
batch job (cluster/slurm.sbatch) points every notebook at the engines it started.

``mpi`` starts the engines with this venv's ``mpiexec``, or with ``srun`` inside a Slurm
allocation (Slurm sites have no ``mpiexec`` to start them with). Engines kept up for JupyterLab
(``KEEP=1`` in cluster/) stop themselves once they sit idle: ``python -m fedlib.lab.engines idle``.

On a shared node the controller's connection files (its addresses and the key that signs every
message: whoever reads them can run code on the engines) are the user's alone: the cluster
starts under umask 077 and every JSON file of the profile's security folder is made 0600.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .. import config, runner
from ..wire.comm import LAUNCH_ENV
from . import sweep

Mode = Literal["mpi", "connect", "local"]


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def private_connection_files(profile_dir: str | Path) -> None:
    """Make the profile's connection and cluster files readable by this user alone (0600)."""
    for f in (Path(profile_dir) / "security").glob("*.json"):
        os.chmod(f, 0o600)


class EngineError(RuntimeError):
    """A run failed on an engine."""


def _engine_run(cfg: config.RunConfig) -> runner.Result | None:
    """Executed on every engine (one MPI rank each); rank 0 returns the tables."""
    from fedlib import runner as frunner
    from fedlib.wire import comm as fcomm

    c = fcomm.make_comm("mpi", chunk_bytes=cfg.federation.chunk_mb << 20)
    res = frunner.run(cfg, comm=c, progress=False)
    return frunner.Result(res.rounds, res.clients, res.summary, None) if c.rank == 0 else None


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally`/atexit stop the engines."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def launch_command(env: Mapping[str, str] | None = None,
                   which: Callable[[str], str | None] | None = None) -> list[str]:
    """What starts the `mpi` engines: `srun` inside a Slurm allocation (its step is the MPI
    launch there), else this venv's `mpiexec`."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID") and (which or shutil.which)("srun"):
        return ["srun"]
    return [str(Path(sys.executable).with_name("mpiexec"))]


def idle(status: Callable[[], object], minutes: float, poll_s: float = 60.0,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Return once the engines' queue status (`Client.queue_status`: tasks queued, running and
    completed per engine) has not changed for `minutes`; the seconds watched."""
    start = last_change = clock()
    seen = status()
    while clock() - last_change < minutes * 60:
        sleep(poll_s)
        now = status()
        if now != seen:
            seen, last_change = now, clock()
    return clock() - start


class Pool:
    def __init__(self, mode: Mode, n: int = 2, profile: str | None = None,
                 cluster_id: str | None = None) -> None:
        self.mode, self.cluster, self.client = mode, None, None
        if mode == "local":
            return
        import ipyparallel as ipp

        if mode == "mpi":
            os.environ.update({k: v for k, v in LAUNCH_ENV.items() if k not in os.environ})
            venv_bin = str(Path(sys.executable).parent)  # mpiexec and ipengine of this venv
            os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
            self.cluster = ipp.Cluster(engines="mpi", n=n, log_level=40)
            self.cluster.config.MPILauncher.mpi_cmd = launch_command()
            atexit.register(self.close)
            _exit_on_sigterm()  # a killed kernel must not leave its MPI engines computing
            with _umask(0o077):  # the controller and engines it spawns inherit it
                self.client = self.cluster.start_and_connect_sync()
            private_connection_files(self.cluster.profile_dir)
        elif mode == "connect":
            self.client = ipp.Client(profile=profile or "default", cluster_id=cluster_id or "")
        else:
            raise ValueError(f"engines mode {mode!r}: choose mpi, connect or local")
        self.client.wait_for_engines(n if mode == "mpi" else 1, timeout=300)

    @property
    def size(self) -> int:
        return 1 if self.client is None else len(self.client.ids)

    def run(self, cfg: config.RunConfig) -> runner.Result:
        if self.client is None:
            return runner.run(cfg, progress=False)
        import ipyparallel as ipp

        ar = self.client[:].apply_async(_engine_run, cfg)
        try:
            out = ar.get()
        except ipp.error.CompositeError as e:
            ename, evalue, tb, info = e.elist[0]
            eid = info.get("engine_id") if isinstance(info, dict) else info
            raise EngineError(f"run {cfg.name!r} failed on engine {eid}: {ename}: {evalue}\n"
                              f"{''.join(tb) if isinstance(tb, list) else tb or ''}") from None
        return next(r for r in out if r is not None)

    def sweep(self, base: config.RunConfig, grid: Sequence[Mapping[str, Any]], desc: str = "runs",
              seeds: Sequence[int] | None = None, export: sweep.Export = False) -> pd.DataFrame:
        return sweep.run_grid(base, grid, run=self.run, desc=desc, seeds=seeds, export=export,
                              ranks=self.size)

    def close(self) -> None:
        if self.client is not None and self.mode == "mpi":
            self.client.close()
        if self.cluster is not None:
            self.cluster.stop_cluster_sync()
            self.cluster = None


@contextmanager
def start(mode: Mode = "mpi", n: int = 2, profile: str | None = None,
          cluster_id: str | None = None) -> Iterator[Pool]:
    mode = os.environ.get("FEDLIB_ENGINES", mode)  # type: ignore[assignment]
    pool = Pool(mode, n, profile or os.environ.get("FEDLIB_IPP_PROFILE"), cluster_id)
    try:
        yield pool
    finally:
        pool.close()


def main(argv: list[str] | None = None) -> int:
    """`idle --profile P --minutes M`: wait until the engines of profile P sit idle M minutes (a
    kept cluster then exits and cluster/jobs.sh stops it, instead of billing the allocation)."""
    ap = argparse.ArgumentParser(prog="python -m fedlib.lab.engines")
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("idle", help="return once the engines sit idle")
    i.add_argument("--profile", required=True)
    i.add_argument("--minutes", type=float, default=30.0)
    args = ap.parse_args(argv)
    import ipyparallel as ipp

    client = ipp.Client(profile=args.profile)
    watched = idle(client.queue_status, args.minutes)
    print(f"engines of {args.profile} idle for {args.minutes:g} min after {watched / 60:.0f} min up: "
          "stopping them (KEEP_IDLE_MIN)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
