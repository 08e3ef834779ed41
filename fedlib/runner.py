"""A run: claim its folder, resolve its device, build the round context, resume (or refuse what
a resume cannot keep), make the privacy mechanism and open the record — once, whatever the
mode — then hand what was built to the mode's loop: synchronous rounds (fedlib.engine.sync), the
virtual clock (fedlib.engine.virtual) or the wall clock (fedlib.engine.wall), which share the steps of
fedlib.engine.lifecycle; when the loop ends, close the record and write its summary. Every rank runs
this same code; what the run writes goes through its recorder (fedlib.record.recorder), which writes
on rank 0 only.
"""

from __future__ import annotations

import torch

from . import config, privacy
from .engine import stop, sync, virtual, wall
from .engine.context import Context
from .engine.lifecycle import Ending, Scores, due, resumed, score
from .hpc import devices
from .record import provenance, residuals, rundir
from .record.checkpoint import WriteError
from .record.recorder import Recorder, Result
from .record.resume import RESUMABLE
from .strategies import ServerState
from .wire.comm import Comm, make_comm

# Context, make_comm and the loops' shared steps (fedlib.engine.lifecycle) stay importable from here
__all__ = ["RESUMABLE", "Context", "Ending", "Result", "Scores", "comm_for", "due", "make_comm", "resumed",
           "run", "score"]


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
    dev = devices.resolve(cfg.device)  # this rank's device, for the model and the loops
    devices.set_threads(cfg.threads, comm.size)
    started = provenance.utc_now()
    if not resume and not overwrite and cfg.federation.resume == "auto":
        resume = "auto"
    with stop.Signals() as signals:  # from the start: a signal during setup stops at round 0
        claim = rundir.claim_all(cfg.run_dir, comm, resume, overwrite)
        try:  # built once, the same for every loop and on every rank; the loop builds nothing again
            ctx = Context.build_on(cfg, comm, dev)
            if full := comm.bcast_obj(residuals.room(cfg, ctx.flat.numel) if comm.rank == 0 else None):
                raise WriteError(full)  # before anything is written: the residuals cannot fit
            prov = provenance.collect(comm, str(ctx.device), torch.get_num_threads(), started)
            state, saved = resumed(ctx) if claim.resume else (ServerState(ctx.flat.get()), None)
            mech = privacy.make(cfg, ctx.shards, ctx.model, comm)
            mech.plan(state)  # before writing anything: a resume that cannot keep the budget refuses here
            rec = Recorder.for_rank(comm.rank == 0, cfg, comm.size, residuals.for_run(cfg), claim.aside,
                                    progress)
            rec.start(ctx, state, prov, saved)
            comm.barrier()
            try:
                if cfg.federation.mode == "sync":
                    end = sync.run_rounds(ctx, mech, rec, state, signals)
                elif cfg.federation.clock == "wall":  # real asynchrony over MPI (it handles its own signals)
                    end = wall.run_wall(ctx, mech, rec, state)
                else:  # fedbuff | fedasync: virtual clock
                    end = virtual.run_virtual(ctx, mech, rec, state, signals)
            finally:
                rec.close()
            # a diverged run reports the state it kept (perhaps never scored, e.g. round 0): scored
            # here, on every rank (it is collective)
            kept = ctx.evaluate(end.state.weights) if end.diverged and cfg.federation.eval_every else None
            return rec.summary(ctx, end.state, end.stopped, end.diverged, kept)
        finally:
            if claim.lock is not None:
                claim.lock.release()
