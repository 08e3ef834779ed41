"""The loop body: what happens to every new model version, whichever loop made it. The
synchronous rounds (fedlib.engine.sync), the virtual clock (fedlib.engine.virtual) and the wall
clock (fedlib.engine.wall) each say only how they make the next version (a `Made`) and supply a
few hooks (`Loop`); `after` then runs one fixed sequence of steps — as pfl-research's callbacks
after each iteration and FLSim's shared trainer base do — so the loops cannot drift:

1. score the version (and tell whether it diverged),
2. keep the last finite state if it did,
3. charge the privacy accountant for the version's training (a diverged version too: its
   training happened and its result was scored, so it was a release),
4. admit the next version against the budget (`Mechanism.admit` on what it may train),
5. start the next version's work (the asynchronous clocks hand the freed slots their tasks,
   charged as they are handed out),
6. checkpoint when due (or when the run stops here),
7. write the rows (which commits that checkpoint after them),
8. check for a stop signal.

Exporting the model and the summary happen once, in the runner, after whichever loop ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .. import privacy
from ..privacy.mechanism import Work
from ..record.metrics import ClientRow, RoundRow, Timer
from ..record.recorder import Recorder
from ..sim import participation
from ..strategies import ServerState
from .context import Context
from .lifecycle import Scores, due, score

__all__ = ["After", "Loop", "Made", "after", "upcoming"]

Rows = Callable[[], tuple[RoundRow, Iterable[ClientRow]]]


@dataclass(frozen=True)
class Made:
    """A new version as a loop made it, before the body's steps."""

    state: ServerState  # the new version; its training not yet charged
    before: ServerState  # the version it was made from: what a diverged one falls back to
    work: Work  # what its making trained (or handed out) that is not charged yet
    timer: Timer  # this version's phases; `after` times eval and checkpoint into it
    where: str  # "in round 3" / "at server step 3", for the divergence message


@dataclass(frozen=True)
class After:
    """What the body decided about a version: the state the run continues from (or keeps), why
    it stops (budget or divergence; None: go on), and the stop signal received (None: none)."""

    state: ServerState
    stopped: str | None = None
    diverged: bool = False
    signame: str | None = None


class Loop(Protocol):
    """What a loop supplies to the body besides the version it made."""

    ctx: Context  # the context versions are scored with (the wall server scores alone)
    unit: str  # "round" | "step", for messages

    def next_work(self, state: ServerState) -> Work:
        """What the version after `state` may train, for the budget (`Mechanism.admit`)."""

    def go(self, state: ServerState, timer: Timer) -> Work:
        """Start the next version's work; what it handed out (charged at once)."""

    def saved(self, state: ServerState, timer: Timer, diverged: bool) -> ServerState:
        """`state` as it is checkpointed (an asynchronous server puts its own state inside)."""

    def rows(self, made: Made, state: ServerState, ev: Scores) -> Rows:
        """The version's rows, built where they are written; may gather from every rank, and
        closes `made.timer`."""

    def signal(self) -> str | None:
        """The stop signal received (SIGTERM, SIGUSR1), the same answer on every rank that runs
        the body."""


def after(loop: Loop, mech: privacy.Mechanism, rec: Recorder, made: Made) -> After:
    """The fixed steps after a version (the module docstring's list), on every rank that runs
    the loop's server: every synchronous and virtual-clock rank, the wall clock's rank 0."""
    fed, timer = loop.ctx.cfg.federation, made.timer
    v = made.state.round
    ev, stopped = score(loop.ctx, made.state, v, timer, made.where)
    diverged = stopped is not None
    if stopped is not None:
        stopped += (f"; stopped, the checkpoint keeps {loop.unit} {made.before.round} "
                    "(the last finite state)")
    state = mech.spend(made.before if diverged else made.state, made.work)
    if not diverged and v < fed.rounds:
        stopped = mech.admit(state, state.round + 1, loop.next_work(state))
        if stopped is None:
            state = mech.spend(state, loop.go(state, timer), ahead=True)
    if stopped is not None or due(fed, v):
        kept = loop.saved(state, timer, diverged)
        with timer("checkpoint"):
            rec.write_checkpoint(kept)
    rec.write_round(loop.rows(made, state, ev))
    if stopped is not None:
        rec.note(stopped)
        return After(state, stopped, diverged)
    if v < fed.rounds and (signame := loop.signal()):  # every rank stops after the same version
        rec.checkpoint_now(loop.saved(state, Timer(), False))
        return After(state, None, False, signame)
    return After(state)


class AsyncWork:
    """The asynchronous loops' `Loop.next_work` (virtual and wall clock): the next server step may
    hand a task to any client (`upcoming`), so the budget admits it against all of them. The
    synchronous loop's is the round it draws (`fedlib.engine.sync`)."""

    ctx: Context

    def next_work(self, state: ServerState) -> Work:
        return upcoming(self.ctx, state.round + 1)[1]


def upcoming(ctx: Context, rnd: int) -> tuple[list[participation.Fate] | None, Work]:
    """What version `rnd` may train, for the budget: a round's clients with their fates (drawn
    once: the round uses them too) and the steps each runs; on an asynchronous clock, one task
    for every client (a version hands a client at most one, fedlib.sim.vclock)."""
    if ctx.cfg.federation.mode != "sync":
        return None, [(c, ctx.steps(c)) for c in range(ctx.cfg.federation.num_clients)]
    clients = None
    if participation.secret_sampling(ctx.cfg):  # OS entropy differs per rank: rank 0 draws for all
        comm = ctx.comm
        clients = comm.bcast_obj(participation.sample_clients(ctx.cfg, rnd) if comm.rank == 0 else None)
    fates = participation.fates(ctx.cfg, rnd, clients)
    return fates, [(f.client, participation.steps_done(f, ctx.steps(f.client)))
                   for f in fates if f.drop != "before"]
