"""The synchronous loop (federation.mode: sync): round after round, play the round
(`fedlib.engine.rounds.play`) with its clients' fates, drawn once when the round before admitted
it (`fedlib.engine.body.upcoming`: the budget's check and the round share them), and hand the new
version to the loop body (`fedlib.engine.body.after`: score, keep, charge, admit, checkpoint,
rows, signals). It takes what the runner built (context, mechanism, recorder, state) and builds
nothing itself but the round's exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import privacy
from ..privacy.mechanism import Work
from ..record.metrics import Timer
from ..record.recorder import Recorder
from ..sim import participation
from ..strategies import ServerState
from ..wire import exchange
from ..wire.codec import Codec
from . import body, lifecycle, rounds, stop
from .context import Context


@dataclass
class Rounds:
    """The synchronous loop's hooks for the body (fedlib.engine.body.Loop)."""

    ctx: Context
    signals: stop.Signals
    mech: privacy.Mechanism
    unit: str = "round"
    fates: list[participation.Fate] = field(default_factory=list)  # the next round's, drawn by `admit`
    work: Work = field(default_factory=list)
    out: rounds.RoundOutcome | None = None  # the round just played
    sent0: int = 0
    copy0: float = 0.0

    def draw(self, rnd: int) -> None:
        fates, self.work = body.upcoming(self.ctx, rnd)
        self.fates = fates or []

    def next_work(self, state: ServerState) -> Work:
        self.draw(state.round + 1)  # the round the budget admits is the round that is played
        return self.work

    def go(self, state: ServerState, timer: Timer) -> Work:
        return []  # a round's clients are charged with the round

    def saved(self, state: ServerState, timer: Timer, diverged: bool) -> ServerState:
        return state

    def rows(self, made: body.Made, state: ServerState, ev: lifecycle.Scores) -> body.Rows:
        comm, out, rnd = self.ctx.comm, self.out, made.state.round
        assert out is not None
        made.timer.move("comm", "copy", comm.copy_s - self.copy0)  # host staging, timed by the comm
        mine = rounds.RankReport(made.timer.close(), out.clients, comm.bytes_sent - self.sent0)
        reports = comm.allgather(mine)
        self.ctx.observe(reports)
        return lambda: (rounds.round_row(self.ctx, rnd, out, reports, ev, self.mech.metrics(state, rnd)),
                        [c for rep in reports for c in rep.clients])

    def signal(self) -> str | None:
        return self.signals.agreed(self.ctx.comm)


def run_rounds(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState, signals: stop.Signals
               ) -> lifecycle.Ending:
    """Loop over rounds from `state` (admitted by the runner) with what the runner built: the
    same code on every rank."""
    cfg, comm, fed = ctx.cfg, ctx.comm, ctx.cfg.federation
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, rec.store),
                       fed.overlap, device=ctx.device)
    loop = Rounds(ctx, signals, mech)
    loop.draw(state.round + 1)
    try:
        while state.round < fed.rounds:
            rnd, timer = state.round + 1, Timer()
            loop.sent0, loop.copy0 = comm.bytes_sent, comm.copy_s
            loop.out = rounds.play(ctx, mech, ex, state, rnd, loop.fates, timer)
            made = body.Made(loop.out.state, state, loop.work, timer, f"in round {rnd}")
            end = body.after(loop, mech, rec, made)
            if end.signame is not None:
                raise stop.Preempted(cfg.name, end.signame, cfg.run_dir, end.state.round)
            state = end.state
            if end.stopped is not None:
                return lifecycle.Ending(state, end.stopped, end.diverged)
    finally:
        ex.close()
    return lifecycle.Ending(state)
