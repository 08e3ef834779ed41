"""What the loops do around a version of the model — the synchronous rounds (fedlib.engine.sync)
and the asynchronous server steps (fedlib.engine.virtual, fedlib.engine.wall): resume from the
checkpoint (fedlib.runner, once for every loop), score a version and tell whether it diverged,
the checkpoint cadence, and how a loop ends (`Ending`, which the runner turns into the run's
summary). A module of its own so that the loops share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import config
from ..record import checkpoint
from ..record.metrics import Timer
from ..record.resume import check as check_resume
from ..strategies import ServerState
from ..wire.flat import finite
from .context import Context

__all__ = ["Ending", "Scores", "due", "resumed", "score"]


Scores = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class Ending:
    """How a loop ended, the same on every rank: the state it kept, why it stopped early (None:
    every round ran) and whether it diverged."""

    state: ServerState
    stopped: str | None = None
    diverged: bool = False


def score(ctx: Context, state: ServerState, v: int, timer: Timer, where: str) -> tuple[Scores, str | None]:
    """Evaluate version `v` when federation.eval_every says so; the second value says why the
    run diverged (weights or evaluation loss not finite), else None."""
    fed = ctx.cfg.federation
    if not finite([state.weights]):
        return (None, None, None), f"diverged {where}: the global weights are not finite"
    if not (fed.eval_every and (v % fed.eval_every == 0 or v == fed.rounds)):
        return (None, None, None), None
    with timer("eval"):
        ev = ctx.evaluate(state.weights)
    return ev, (f"diverged {where}: the evaluation loss is {ev[0]}" if not np.isfinite(ev[0]) else None)


def due(fed: config.FederationConfig, v: int) -> bool:
    """Whether version `v` is checkpointed (every federation.checkpoint_every, and the last)."""
    return fed.checkpoint_every > 0 and (v % fed.checkpoint_every == 0 or v == fed.rounds)


def resumed(ctx: Context) -> tuple[ServerState, dict[str, Any]]:
    """The checkpoint's state on this run's device (saved from any device), and its config,
    refused when this run's configuration would make a different run."""
    state, saved = checkpoint.load(ctx.cfg.run_dir, ctx.device)
    check_resume(saved, ctx.cfg, ctx.cfg.run_dir)
    return state, saved
