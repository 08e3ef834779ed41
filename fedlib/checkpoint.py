"""Server state to disk and back. Written atomically (temp file + rename) so an interrupted
run always leaves the last complete round; loaded with `weights_only=True`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .strategies.state import ServerState

FILE = "checkpoint.pt"


def save(run_dir: Path, state: ServerState, config: dict[str, Any]) -> Path:
    path = run_dir / FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"weights": state.weights, "round": state.round, "opt_state": state.opt_state,
                "extra": state.extra, "config": config}, tmp)
    os.replace(tmp, path)
    return path


def load(run_dir: Path) -> tuple[ServerState, dict[str, Any]]:
    path = run_dir / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    blob = torch.load(path, weights_only=True, map_location="cpu")  # GPU runs resume anywhere
    state = ServerState(blob["weights"], blob["round"], blob["opt_state"], blob["extra"])
    return state, blob["config"]
