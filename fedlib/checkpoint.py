"""Server state to disk and back. Written atomically (temp file + rename) so an interrupted
run always leaves the last complete round; loaded with `weights_only=True`. Saving is two
steps, `write` (the slow part, timed as the round's checkpoint phase) and `commit` (the
rename), so that the runner can flush the round's CSV rows in between: a checkpoint never
covers a round whose rows are not on disk.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .strategies.state import ServerState

FILE = "checkpoint.pt"
KEYS = ("weights", "round", "opt_state", "extra", "config")


class CheckpointError(ValueError):
    """A checkpoint file that is not one of ours (corrupt, truncated, or not weights)."""


def write(run_dir: Path, state: ServerState, config: dict[str, Any]) -> Path:
    tmp = (run_dir / FILE).with_suffix(".tmp")
    torch.save({"weights": state.weights, "round": state.round, "opt_state": state.opt_state,
                "extra": state.extra, "config": config}, tmp)
    return tmp


def commit(run_dir: Path) -> Path:
    path = run_dir / FILE
    os.replace(path.with_suffix(".tmp"), path)
    return path


def save(run_dir: Path, state: ServerState, config: dict[str, Any]) -> Path:
    write(run_dir, state, config)
    return commit(run_dir)


def load(run_dir: Path) -> tuple[ServerState, dict[str, Any]]:
    path = run_dir / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        blob = torch.load(path, weights_only=True, map_location="cpu")  # GPU runs resume anywhere
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
