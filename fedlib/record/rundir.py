"""One run folder, one run: a lock file names the run that owns `outputs/<name>/`, and a new
run refuses a folder that already holds results unless asked to replace them. Without this a
rerun under the same name truncated the old CSVs before its first round (a failed rerun lost
the earlier results) and two runs at once interleaved their rows and shared checkpoint.tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOCK = ".lock"
CHECKPOINT = "checkpoint.pt"
RESULTS = ("rounds.csv", "clients.csv", "summary.json", "checkpoint.pt", "residuals")
PREVIOUS = ".previous-"  # an overwritten run's files, kept until the new run's first round is done
HEARTBEAT_S = 60.0  # a running run touches its lock this often
STALE_S = 600.0  # a lock on another host whose heartbeat is older than this is stale (its node died)


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


def _age(path: Path) -> float:
    """Seconds since `path` was last touched; 0 when it is gone (another claimant may remove it
    between any check and this stat)."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _linked(src: Path, dst: Path) -> bool:
    """Give the fully written `src` the name `dst` unless `dst` exists: link(2) is one atomic
    step that fails on an existing name (on NFS, Lustre and GPFS too)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    return True


class Lock:
    """`run_dir/.lock`, holding pid, host and start time; kept fresh by a heartbeat thread.

    Taken in one atomic step: the full record is written to a private temporary file that is
    then hard-linked to `.lock` (link fails when the name exists), so exactly one of many
    claimants wins and nobody reads a half-written lock. We rely on link(2) rather than
    fcntl.flock because link is atomic on every POSIX file system, NFS, Lustre and GPFS
    included, whereas flock on Lustre needs the `flock` mount option (many sites mount with
    `localflock` or none, where it is node-local or fails) and never survives the node that
    held it. A stale lock is broken under a second link-taken lock (`.lock.break`), so two
    claimants can never both remove a lock and both win: one breaks it, re-checks it is still
    the stale one, unlinks it, and everyone races for `.lock` again by link. Stale means: its
    process is gone (same host), or, on another host, its heartbeat (the file's mtime,
    touched every HEARTBEAT_S) is older than STALE_S."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        run_dir.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()
        me = {"pid": os.getpid(), "host": self.host,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        tmp = run_dir / f"{LOCK}.{self.host}.{os.getpid()}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(me))
        deadline = time.monotonic() + 30  # only while others break a stale lock
        try:
            while not _linked(tmp, self.path):
                self._break_if_stale()
                if time.monotonic() > deadline:
                    raise RunDirError(f"{run_dir}: could not take the lock {self.path}")
        finally:
            tmp.unlink(missing_ok=True)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="fedlib-lock")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._heartbeat_once()

    def _heartbeat_once(self) -> None:
        """Touch the lock: its mtime tells other hosts this run is alive."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def _holder(self) -> tuple[bytes, dict[str, Any]] | None:
        """The lock's bytes and record; None when it is gone (released meanwhile)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            other = json.loads(raw)
            return raw, {"pid": int(other["pid"]), "host": str(other["host"]),
                         "since": other.get("started", "?")}
        except (ValueError, KeyError, TypeError):  # never half-written: not a fedlib lock
            raise RunDirError(f"{self.path.parent}: lock file {self.path} is unreadable; if no run "
                              "uses this folder, delete it") from None

    def _stale(self, who: dict[str, Any]) -> str | None:
        """Why the holder is gone (None: it is alive, as far as we can tell)."""
        if who["host"] == self.host:
            return None if _alive(who["pid"]) else f"pid {who['pid']} is gone"
        try:
            age = _age(self.path)
        except FileNotFoundError:
            return "released"
        return f"no heartbeat for {age / 60:.0f} min" if age > STALE_S else None

    def _break_if_stale(self) -> None:
        held = self._holder()
        if held is None:
            return  # released meanwhile: try again
        raw, who = held
        if (why := self._stale(who)) is None:
            age = _age(self.path)
            raise RunDirError(f"{self.path.parent} is in use by another run: pid {who['pid']} on host "
                              f"{who['host']} (since {who['since']}, heartbeat {age:.0f} s ago); wait "
                              f"for it, or pick another name (if that process is gone, delete {self.path})")
        brk = self.path.with_name(LOCK + ".break")
        mine = self.path.with_name(f"{brk.name}.{self.host}.{os.getpid()}.{uuid.uuid4().hex}")
        mine.write_text(json.dumps({"pid": os.getpid(), "host": self.host}))
        try:
            if not _linked(mine, brk):  # someone else is breaking it: wait for them
                if _age(brk) > 60:
                    raise RunDirError(f"{brk} is left from a takeover that died; if no run uses "
                                      f"{self.path.parent}, delete it")
                time.sleep(0.01)
                return
            try:
                if (again := self._holder()) is not None and again[0] == raw:  # still the stale one
                    self.path.unlink()
                    print(f"fedlib: {self.path.parent}: took over the lock of pid {who['pid']} on "
                          f"{who['host']} ({why})", file=sys.stderr, flush=True)
            finally:
                brk.unlink(missing_ok=True)
        finally:
            mine.unlink(missing_ok=True)

    def release(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)


def _has_rows(path: Path) -> bool:
    """A CSV with at least one row after its header (a header alone measured nothing)."""
    with open(path, "rb") as f:
        return f.read(1 << 16).count(b"\n") >= 2


def has_results(run_dir: Path) -> bool:
    """Anything a run measured: a header-only CSV (a run stopped before its first round) is not."""
    return any(p.exists() and (p.suffix != ".csv" or _has_rows(p)) for p in (run_dir / f for f in RESULTS))


@dataclass(frozen=True)
class Claim:
    lock: Lock | None  # rank 0's; None on the other ranks
    resume: bool  # continue from the folder's checkpoint (--resume, or --resume auto that found one)
    replaces: bool = False  # --overwrite of a folder with results: `clear` moves them aside


def _previous_checkpoint(run_dir: Path) -> str:
    """Where a failed --overwrite left the replaced run's checkpoint (for the refusal)."""
    kept = sorted(run_dir.glob(f"{PREVIOUS}*/{CHECKPOINT}"))
    if not kept:
        return ""
    return (f"; the run an --overwrite replaced left its checkpoint in {kept[-1]} (move the files of "
            f"{kept[-1].parent.name}/ back into {run_dir} to resume that run)")


def usable(run_dir: Path) -> None:
    """Refuse, in one line, a run folder that cannot be made: a symbolic link to nothing, or a
    path through a file (mkdir would say only `[Errno 17]` or `[Errno 20]`)."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise RunDirError(f"{run_dir}: is a symbolic link to {os.readlink(run_dir)}, which does not exist; "
                          "create its target or remove the link")
    for p in (run_dir, *run_dir.parents):
        if p.exists():
            if not p.is_dir():
                raise RunDirError(f"{run_dir}: {p} is a file, not a folder; choose another output_dir "
                                  "or name")
            return


def claim(run_dir: Path, resume: bool | str, overwrite: bool) -> Claim:
    """Lock `run_dir` for this run and decide, touching nothing else: `resume="auto"` resumes
    when the folder holds a checkpoint and starts fresh otherwise (what a requeued job needs). A
    fresh run into a folder with results refuses, or with `overwrite` is marked to replace them
    (`clear` moves them, once the run's input is known to be valid)."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: --resume continues the run "
                          f"in {run_dir}, --overwrite replaces it; pick one")
    usable(run_dir)
    lock = Lock(run_dir)
    try:
        saved = (run_dir / CHECKPOINT).is_file()
        if resume == "auto":
            resume = saved
        if resume and not saved:
            raise RunDirError(f"{run_dir / CHECKPOINT}: no checkpoint to resume from"
                              f"{_previous_checkpoint(run_dir)}")
        if resume or not has_results(run_dir):
            return Claim(lock, bool(resume))
        if not overwrite:
            raise RunDirError(f"{run_dir} already holds the results of an earlier run; use --resume to "
                              "continue it, --overwrite (run(..., overwrite=True)) to replace it, or "
                              "another name")
        return Claim(lock, False, replaces=True)
    except BaseException:
        lock.release()
        raise


def clear(claim: Claim, run_dir: Path) -> Path | None:
    """Make the claimed folder ready for a fresh run (rank 0; the run's input is valid by now):
    with --overwrite, move the old files aside into `.previous-<time>/`, returned for `discard`
    once the new run has a round of its own, so old and new files are never mixed; without,
    drop stale residuals and return a failed replacement's leftovers. A resume changes nothing."""
    if claim.lock is None or claim.resume:
        return None
    if not claim.replaces:
        shutil.rmtree(run_dir / "residuals", ignore_errors=True)
        # a failed replacement's leftovers: deleted with the rest once this run has a round
        return next(iter(sorted(run_dir.glob(PREVIOUS + "*"))), None)
    aside = run_dir / (PREVIOUS + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"))
    aside.mkdir()
    for p in run_dir.iterdir():
        if not p.name.startswith((LOCK, PREVIOUS)):
            p.rename(aside / p.name)
    return aside


def claim_all(run_dir: Path, comm: Any, resume: bool | str, overwrite: bool) -> Claim:
    """`claim` on rank 0, whose verdict (and resume decision) reaches every rank (none may
    start alone, and all resume or none)."""
    got = Claim(None, False)
    err = None
    if comm.rank == 0:
        try:
            got = claim(run_dir, resume, overwrite)
        except (RunDirError, OSError) as e:
            err = str(e)
    err, resumed = comm.bcast_obj((err, got.resume))
    if err:
        raise RunDirError(err)
    return Claim(got.lock, resumed, got.replaces)


def discard(aside: Path | None) -> None:
    """Delete the replaced run's files, and any a failed replacement left before (the new run
    has a round of its own now, so the folder holds one run again)."""
    if aside is not None:
        for p in aside.parent.glob(PREVIOUS + "*"):
            shutil.rmtree(p, ignore_errors=True)
