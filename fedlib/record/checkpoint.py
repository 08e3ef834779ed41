"""Server state to disk and back. Written atomically (temp file + rename) so an interrupted
run always leaves the last complete round; loaded with `weights_only=True`. Saving is two
steps, `write` (the slow part, timed as the round's checkpoint phase) and `commit` (the
rename), so that the runner can flush the round's CSV rows in between: a checkpoint never
covers a round whose rows are not on disk.
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..strategies.state import ServerState

FILE = "checkpoint.pt"
KEYS = ("weights", "round", "opt_state", "extra", "config")


class CheckpointError(ValueError):
    """A checkpoint file that is not one of ours (corrupt, truncated, or not weights)."""


class WriteError(OSError):
    """The file system refused the checkpoint (full, over quota, gone); the last one is intact."""


def _free(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:.1f} MiB free" if free < 2**30 else f"{free / 2**30:.1f} GiB free"


def _write_failure(e: BaseException) -> str | None:
    """Why the file system refused the write, or None for any other error. torch wraps the
    OSError of a failed write in RuntimeError ("inline_container.cc ... unexpected pos")."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError):
            return os.strerror(seen.errno) if seen.errno else str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, RuntimeError) and any(w in str(e) for w in ("write", "iostream", "inline_container")):
        return str(e).strip().splitlines()[0][:120]
    return None


def write(run_dir: Path, state: ServerState, config: dict[str, Any]) -> Path:
    """Write `checkpoint.tmp`. On a failed write (a full disk or quota, typically) the
    half-written temp file is removed and one line names the folder and its free space; the
    committed checkpoint.pt, untouched, still holds the last complete round."""
    tmp = (run_dir / FILE).with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:  # a file object: the OSError (ENOSPC, EDQUOT) stays in the chain
            torch.save({"weights": state.weights, "round": state.round, "opt_state": state.opt_state,
                        "extra": state.extra, "config": config}, f)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if (why := _write_failure(e)) is not None:
            kept = "the last checkpoint.pt is intact" if (run_dir / FILE).is_file() else "no checkpoint yet"
            raise WriteError(f"{run_dir}: could not write the checkpoint of round {state.round}: {why} "
                             f"({_free(run_dir)}); removed the half-written {tmp.name}, {kept}") from None
        raise
    return tmp


def commit(run_dir: Path) -> Path:
    path = run_dir / FILE
    os.replace(path.with_suffix(".tmp"), path)
    return path


def save(run_dir: Path, state: ServerState, config: dict[str, Any]) -> Path:
    write(run_dir, state, config)
    return commit(run_dir)


def load(run_dir: Path, device: torch.device | str = "cpu") -> tuple[ServerState, dict[str, Any]]:
    """The checkpoint's state, its tensors on `device` (whatever device saved them), and its config."""
    path = run_dir / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        blob = torch.load(path, weights_only=True, map_location=device)  # GPU runs resume anywhere
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, AttributeError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable fedlib checkpoint (corrupt, truncated, or not "
                              f"weights-only): {first[:200]}") from None
    if not isinstance(blob, dict) or any(k not in blob for k in KEYS) or not isinstance(
            blob["weights"], torch.Tensor):
        raise CheckpointError(f"{path}: not a fedlib checkpoint (expected the keys {', '.join(KEYS)})")
    state = ServerState(blob["weights"], blob["round"], blob["opt_state"], blob["extra"])
    return state, blob["config"]


def saved_round(run_dir: Path) -> int | None:
    """The round `checkpoint.pt` holds (None: none, or unreadable), read lazily (mmap): cheap
    enough for a message after Ctrl-C."""
    try:
        return int(torch.load(run_dir / FILE, weights_only=True, mmap=True, map_location="cpu")["round"])
    except Exception:  # noqa: BLE001 - only a message depends on it
        return None
