"""One run folder, one run: a lock file names the run that owns `outputs/<name>/`, and a new
run refuses a folder that already holds results unless asked to replace them. Without this a
rerun under the same name truncated the old CSVs before its first round (a failed rerun lost
the earlier results) and two runs at once interleaved their rows and shared checkpoint.tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOCK = ".lock"
RESULTS = ("rounds.csv", "clients.csv", "summary.json", "checkpoint.pt", "residuals")
PREVIOUS = ".previous-"  # an overwritten run's files, kept until the new run's first round is done


class RunDirError(RuntimeError):
    """The run folder is in use or holds results the run was not allowed to replace."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """`run_dir/.lock`, created exclusively (O_EXCL) and holding pid, host and start time. A lock
    left by a dead process on this host is taken over; one held elsewhere is reported."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        run_dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_stale(me["host"])
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return
        raise RunDirError(f"{run_dir}: could not take the lock {self.path}")

    def _check_stale(self, host: str) -> None:
        try:
            other = json.loads(self.path.read_text())
            pid, where, since = int(other["pid"]), str(other["host"]), other.get("started", "?")
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (ValueError, KeyError, TypeError, OSError):
            raise RunDirError(f"{self.path.parent}: lock file {self.path} is unreadable; if no run "
                              "uses this folder, delete it") from None
        if where == host and not _alive(pid):
            self.path.unlink(missing_ok=True)  # stale: its process is gone
            return
        raise RunDirError(f"{self.path.parent} is in use by another run: pid {pid} on host {where} "
                          f"(since {since}); wait for it, or pick another name (if that process is "
                          f"gone, delete {self.path})")

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def has_results(run_dir: Path) -> bool:
    return any((run_dir / f).exists() for f in RESULTS)


def claim(run_dir: Path, resume: bool, overwrite: bool) -> tuple[Lock, Path | None]:
    """Lock `run_dir` for this run. A fresh run into a folder with results refuses, or with
    `overwrite` moves the old files aside into `.previous-<time>/` (returned, for `discard` once
    the new run has a round of its own), so old and new files are never mixed."""
    lock = Lock(run_dir)
    try:
        if resume or not has_results(run_dir):
            if not resume:
                shutil.rmtree(run_dir / "residuals", ignore_errors=True)
            return lock, None
        if not overwrite:
            raise RunDirError(f"{run_dir} already holds the results of an earlier run; use --resume to "
                              "continue it, --overwrite (run(..., overwrite=True)) to replace it, or "
                              "another name")
        aside = run_dir / (PREVIOUS + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"))
        aside.mkdir()
        for p in run_dir.iterdir():
            if p.name != LOCK and not p.name.startswith(PREVIOUS):
                p.rename(aside / p.name)
        return lock, aside
    except BaseException:
        lock.release()
        raise


def claim_all(run_dir: Path, comm: Any, resume: bool, overwrite: bool) -> tuple[Lock | None, Path | None]:
    """`claim` on rank 0, whose verdict reaches every rank (none may start alone)."""
    got: tuple[Lock | None, Path | None] = (None, None)
    err = None
    if comm.rank == 0:
        try:
            got = claim(run_dir, resume, overwrite)
        except (RunDirError, OSError) as e:
            err = str(e)
    err = comm.bcast_obj(err)
    if err:
        raise RunDirError(err)
    return got


def discard(aside: Path | None) -> None:
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
