"""Why a run ends early, and the exit status that says so. A batch job is told to stop
before it is killed: Slurm sends SIGTERM at walltime (or SIGUSR1 ahead of it with
`--signal=B:USR1@300`), PBS sends SIGTERM before SIGKILL, a preemption does the same. The run
then finishes the round it is in, checkpoints it and exits with PREEMPTED, so that the
requeued job continues with `--resume auto` instead of losing everything since the last
`federation.checkpoint_every`. A signal may reach only some ranks, so the ranks agree on it
once per round (one tiny allgather) and all stop after the same round.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

OK, BUG, USAGE, WORLD_MISMATCH, DIVERGED = 0, 1, 2, 3, 4
REPLAY_MISMATCH = 5  # `fedlib replay`: the log's model is not the checkpoint's
DISK_FULL = 74  # sysexits EX_IOERR: the file system refused a write (full, or over quota)
PREEMPTED = 75  # sysexits EX_TEMPFAIL: stopped on request, checkpointed; run again with --resume auto
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

SIGNALS = ("SIGTERM", "SIGUSR1")
CONTINUE = "continue with the same command plus --resume auto (or federation.resume: auto)"


class Preempted(Exception):
    """The run stopped on a signal after checkpointing its last complete round."""

    def __init__(self, name: str, signame: str, run_dir: Path, kept: int) -> None:
        self.signame, self.run_dir, self.kept = signame, run_dir, kept
        super().__init__(f"{name}: stopped by {signame}; the checkpoint in {run_dir} keeps round {kept}; "
                         f"{CONTINUE}")


class Signals:
    """Record SIGTERM / SIGUSR1 instead of dying on them, for the duration of a run.

    Only the main thread may install handlers (a run inside a worker thread keeps the default
    behaviour); the previous handlers come back on exit, so a notebook kernel is unchanged."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                if (num := getattr(signal, name, None)) is not None:
                    self._old[num] = signal.signal(num, self._note)
        return self

    def _note(self, num: int, _frame: FrameType | None) -> None:
        self.received = self.received or signal.Signals(num).name

    def __exit__(self, *exc: object) -> None:
        for num, old in self._old.items():
            signal.signal(num, old)
        self._old.clear()

    def agreed(self, comm: Any) -> str | None:
        """The signal any rank received, the same answer on every rank (collective)."""
        seen = [s for s in comm.allgather(self.received) if s]
        return seen[0] if seen else None


def after_launcher(name: str, run_dir: Path, wait_s: float = 120.0, poll_s: float = 0.5) -> tuple[int, str]:
    """(exit status, the line to print) once a launcher that got the job's signal has ended. A
    launcher that is itself signalled may end at once (Open MPI's mpiexec: status 1, the ranks'
    output cut) while its ranks finish their round: wait for the run's lock (the ranks hold it
    until they exit), then read the folder: finished (summary.json), stopped with a checkpoint,
    or stopped before one. The batch scripts call this (`fedlib stopped`, cluster/jobs.sh)."""
    from ..record.checkpoint import saved_round
    from ..record.rundir import LOCK

    deadline = time.monotonic() + wait_s
    while (run_dir / LOCK).exists():
        if time.monotonic() >= deadline:
            return BUG, (f"fedlib: {name}: the ranks still hold {run_dir / LOCK} {wait_s:g} s after the "
                         "launcher ended; a later start takes it over once its heartbeat is stale")
        time.sleep(poll_s)
    if (run_dir / "summary.json").is_file():
        return OK, f"fedlib: {name}: finished before the signal took effect"
    kept = saved_round(run_dir)
    if kept is None:
        return PREEMPTED, f"fedlib: {name}: stopped by a signal before its first checkpoint; start it again"
    return PREEMPTED, (f"fedlib: {name}: stopped by a signal to the launcher; the checkpoint in {run_dir} "
                       f"keeps round {kept}; {CONTINUE}")
