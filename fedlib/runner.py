"""A run: build the round context, resume (or refuse what a resume cannot keep), loop over
rounds (`fedlib.federated_round.play`), evaluate, stop on divergence or budget, write the rows
and the checkpoint that covers them, export, summarize (fedlib.lifecycle: the steps it shares
with the asynchronous loop, fedlib.async_loop). Every rank runs this same code; what the run
writes goes through its recorder (fedlib.recorder), which writes on rank 0 only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import async_loop, config, federated_round, privacy, provenance, residuals, rundir, stop
from . import device as devices
from . import launch as launcher
from .federated_round import Context
from .lifecycle import Scores, due, finish, resumed, score
from .metrics import Timer
from .recorder import Recorder, Result
from .resume import RESUMABLE
from .strategies import ServerState
from .wire import exchange
from .wire.codec import Codec
from .wire.comm import Comm, make_comm

# Context, make_comm and the loops' shared steps (fedlib.lifecycle) stay importable from here
__all__ = ["RESUMABLE", "Context", "Result", "Scores", "comm_for", "due", "finish", "make_comm", "resumed",
           "run", "score"]


def _set_threads(cfg: config.RunConfig, comm: Comm) -> None:
    """`threads`, else the launcher's word (OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, cores / ranks
    per node under Open MPI, Slurm, PALS or Hydra)."""
    threads = cfg.threads if cfg.threads is not None else launcher.threads_per_rank(comm.size)
    if threads is not None:
        torch.set_num_threads(threads)
    launcher.warn_oversubscription(torch.get_num_threads(), comm.size)


def comm_for(cfg: config.RunConfig) -> Comm:
    """The Comm for federation.backend on the ranks the launcher started (one process: local)."""
    kind = "torch" if cfg.federation.backend == "torch" else "auto"
    return make_comm(kind, chunk_bytes=cfg.federation.chunk_mb << 20, device=devices.resolve(cfg.device),
                     timeout_s=cfg.federation.timeout_s)


def run(cfg: config.RunConfig, comm: Comm | None = None, resume: bool | str = False,
        progress: bool = True, overwrite: bool = False) -> Result:
    """Run (or resume) the federated training described by `cfg`; rank 0 writes the outputs.
    The run folder is locked for the run; a folder holding an earlier run's results is refused
    unless `overwrite` (its files are then moved aside, and deleted after the first new round).
    `resume="auto"` (or `federation.resume: auto`, unless `overwrite`) resumes when the folder
    holds a checkpoint and starts fresh otherwise. SIGTERM / SIGUSR1 stop the run after the
    round in progress, with that round checkpointed: `stop.Preempted` is raised."""
    comm = comm or comm_for(cfg)
    _set_threads(cfg, comm)
    started = provenance.utc_now()
    if not resume and not overwrite and cfg.federation.resume == "auto":
        resume = "auto"
    with stop.Signals() as signals:  # from the start: a signal during setup stops at round 0
        claim = rundir.claim_all(cfg.run_dir, comm, resume, overwrite)
        try:
            if cfg.federation.mode != "sync":  # fedbuff | fedasync: the virtual-clock loop
                return async_loop.run(cfg, comm, claim.resume, progress, started, claim.aside, signals)
            return _run(cfg, comm, claim.resume, progress, started, claim.aside, signals)
        finally:
            if claim.lock is not None:
                claim.lock.release()


def _run(cfg: config.RunConfig, comm: Comm, resume: bool, progress: bool, started: str,
         aside: Path | None, signals: stop.Signals) -> Result:
    """Build, resume, loop over rounds, finish: the same code on every rank."""
    ctx = Context.build(cfg, comm)
    fed = cfg.federation
    prov = provenance.collect(comm, str(next(ctx.model.parameters()).device), torch.get_num_threads(),
                              started)
    state, saved = resumed(ctx) if resume else (ServerState(ctx.flat.get()), None)
    mech = privacy.make(cfg, ctx.shards, ctx.model, comm)
    mech.plan(state)  # before writing anything: a resume that cannot keep the budget refuses here
    store = residuals.for_run(cfg)
    rec = Recorder.for_rank(comm.rank == 0, cfg, comm.size, store, aside, progress)
    rec.start(ctx, state, prov, saved)
    comm.barrier()
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, store), fed.overlap,
                       device=ctx.device)
    stopped, diverged = None, False
    try:
        while state.round < fed.rounds:
            if signame := signals.agreed(comm):  # every rank stops after the same round
                rec.checkpoint_now(state)
                raise stop.Preempted(cfg.name, signame, cfg.run_dir, state.round)
            if stopped := mech.admit(state, state.round + 1):
                rec.save(state)
                rec.note(stopped)
                break
            state, stopped = _round(ctx, mech, ex, rec, state)
            if diverged := stopped is not None:
                rec.note(stopped)
                break
    finally:
        ex.close()
        rec.close()
    if not diverged:
        rec.export(state.weights, ctx.data.label_names, ctx.spec)
    return finish(rec, ctx, state, stopped, diverged)


def _round(ctx: Context, mech: privacy.Mechanism, ex: exchange.Exchange, rec: Recorder, state: ServerState
           ) -> tuple[ServerState, str | None]:
    """One round on every rank: play it, score it, keep the last finite state if it diverged,
    checkpoint it when due, record it. Returns the new state and why the run stops (None)."""
    comm, fed = ctx.comm, ctx.cfg.federation
    rnd, before, timer = state.round + 1, state, Timer()
    sent0, copy0 = comm.bytes_sent, comm.copy_s
    out = federated_round.play(ctx, mech, ex, state, rnd, timer)
    state = out.state
    ev, stopped = score(ctx, state, rnd, timer, f"in round {rnd}")
    if diverged := stopped is not None:
        stopped += f"; stopped, the checkpoint keeps round {before.round} (the last finite state)"
        state = mech.charge(before, state)  # its weights are dropped, its release is not
    if diverged or due(fed, rnd):
        with timer("checkpoint"):
            rec.write_checkpoint(state)
    timer.move("comm", "copy", comm.copy_s - copy0)  # host staging, timed by the comm
    reports = comm.allgather(federated_round.RankReport(timer.close(), out.clients, comm.bytes_sent - sent0))
    ctx.observe(reports)
    rec.write_round(lambda: (federated_round.round_row(ctx, rnd, out, reports, ev, mech.metrics(state, rnd)),
                             [c for rep in reports for c in rep.clients]))
    return state, stopped
