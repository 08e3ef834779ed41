"""The synchronous loop (federation.mode: sync): round after round, draw its clients' fates
(`fedlib.sim.participation.fates`, once: the privacy budget's check and the round share them), play
it (`fedlib.engine.rounds.play`), score it, stop on divergence, budget or a stop signal, write
its rows and the checkpoint that covers them, export. It takes what the runner built (context,
mechanism, recorder, state) and builds nothing itself but the round's exchange.
"""

from __future__ import annotations

from .. import privacy
from ..record.metrics import Timer
from ..record.recorder import Recorder
from ..sim import participation
from ..strategies import ServerState
from ..wire import exchange
from ..wire.codec import Codec
from . import lifecycle, rounds, stop
from .context import Context


def run_rounds(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState, signals: stop.Signals
               ) -> lifecycle.Ending:
    """Loop over rounds from `state` with what the runner built: the same code on every rank.
    The runner closes the record and writes the summary."""
    cfg, comm, fed = ctx.cfg, ctx.comm, ctx.cfg.federation
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, rec.store),
                       fed.overlap, device=ctx.device)
    stopped, diverged = None, False
    try:
        while state.round < fed.rounds:
            if signame := signals.agreed(comm):  # every rank stops after the same round
                rec.checkpoint_now(state)
                raise stop.Preempted(cfg.name, signame, cfg.run_dir, state.round)
            fates = participation.fates(cfg, state.round + 1)  # drawn once: the budget and the round use them
            if stopped := mech.admit(state, state.round + 1, fates):
                rec.save(state)
                rec.note(stopped)
                break
            state, stopped = _round(ctx, mech, ex, rec, state, fates)
            if diverged := stopped is not None:
                rec.note(stopped)
                break
    finally:
        ex.close()
    if not diverged:
        rec.export(state.weights, ctx.data.label_names, ctx.spec)
    return lifecycle.Ending(state, stopped, diverged)


def _round(ctx: Context, mech: privacy.Mechanism, ex: exchange.Exchange, rec: Recorder, state: ServerState,
           fates: list[participation.Fate]) -> tuple[ServerState, str | None]:
    """One round on every rank, its clients' `fates` drawn: play it, score it, keep the last
    finite state if it diverged, checkpoint it when due, record it. Returns the new state and
    why the run stops (None)."""
    comm, fed = ctx.comm, ctx.cfg.federation
    rnd, before, timer = state.round + 1, state, Timer()
    sent0, copy0 = comm.bytes_sent, comm.copy_s
    out = rounds.play(ctx, mech, ex, state, rnd, fates, timer)
    state = out.state
    ev, stopped = lifecycle.score(ctx, state, rnd, timer, f"in round {rnd}")
    if diverged := stopped is not None:
        stopped += f"; stopped, the checkpoint keeps round {before.round} (the last finite state)"
        state = mech.charge(before, state)  # its weights are dropped, its release is not
    if diverged or lifecycle.due(fed, rnd):
        with timer("checkpoint"):
            rec.write_checkpoint(state)
    timer.move("comm", "copy", comm.copy_s - copy0)  # host staging, timed by the comm
    reports = comm.allgather(rounds.RankReport(timer.close(), out.clients, comm.bytes_sent - sent0))
    ctx.observe(reports)
    rec.write_round(lambda: (rounds.round_row(ctx, rnd, out, reports, ev, mech.metrics(state, rnd)),
                             [c for rep in reports for c in rep.clients]))
    return state, stopped
