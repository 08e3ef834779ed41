"""A run: lock its folder, resolve its device, build the round context, resume (or refuse what
a resume cannot keep), make the privacy mechanism and admit the first version against its budget
— everything that can refuse the input, before the folder is touched — then clear the folder,
open the record and hand what was built to the mode's loop: synchronous rounds
(fedlib.engine.sync), the virtual clock (fedlib.engine.virtual) or the wall clock
(fedlib.engine.wall), which hand every version to the one loop body (fedlib.engine.body). After
whichever loop ran: close the record, export the model and write the summary, once. Every rank
runs this same code; what the run writes goes through its recorder (fedlib.record.recorder),
which writes on rank 0 only.
"""

from __future__ import annotations

import torch

from . import config, privacy
from .engine import body, stop, sync, virtual, wall
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
        claim = rundir.claim_all(cfg.run_dir, comm, resume, overwrite)  # the lock; nothing moved yet
        try:  # built once, the same for every loop and on every rank; the loop builds nothing again
            ctx = Context.build_on(cfg, comm, dev)
            if full := comm.bcast_obj(residuals.room(cfg, ctx.flat.numel) if comm.rank == 0 else None):
                raise WriteError(full)  # before anything is written: the residuals cannot fit
            prov = provenance.collect(comm, str(ctx.device), torch.get_num_threads(), started)
            state, saved = resumed(ctx) if claim.resume else (ServerState(ctx.flat.get()), None)
            mech = privacy.make(cfg, ctx.shards, ctx.model, comm)
            mech.plan(state)  # a resume that cannot keep the budget refuses here
            refused = admit_first(ctx, mech, state)
            aside = rundir.clear(claim, cfg.run_dir)  # the input is valid: only now is the folder touched
            rec = Recorder.for_rank(comm.rank == 0, cfg, comm.size, residuals.for_run(cfg), aside, progress)
            rec.start(ctx, state, prov, saved)
            if note := replayable(cfg):
                rec.note(note)
            comm.barrier()
            try:
                end = _loop(ctx, mech, rec, state, signals, refused)
            finally:
                rec.close()
            if not end.diverged:
                rec.export(end.state.weights, ctx.data.label_names, ctx.spec)
            # a diverged run reports the state it kept (perhaps never scored, e.g. round 0): scored
            # here, on every rank (it is collective)
            kept = ctx.evaluate(end.state.weights) if end.diverged and cfg.federation.eval_every else None
            return rec.summary(ctx, end.state, end.stopped, end.diverged, kept)
        finally:
            if claim.lock is not None:
                claim.lock.release()


def admit_first(ctx: Context, mech: privacy.Mechanism, state: ServerState) -> str | None:
    """The budget's verdict on the first version this run would make: a fresh run whose budget
    cannot pay for round 1 is a ConfigError (as an unreachable target_epsilon is), a resumed one
    that has spent it stops at once (its reason; None: go)."""
    fed, rnd = ctx.cfg.federation, state.round + 1
    if rnd > fed.rounds or (why := mech.admit(state, rnd, body.upcoming(ctx, rnd)[1])) is None:
        return None
    if state.round == 0:
        raise config.ConfigError(f"privacy.epsilon_budget={ctx.cfg.privacy.epsilon_budget}: cannot pay for "
                                 f"the first {'round' if fed.mode == 'sync' else 'server step'}: "
                                 f"{why.partition('; stopped')[0]}")
    return why


def replayable(cfg: config.RunConfig) -> str | None:
    """What a DP run with seeded noise says once, at its start (None: no DP, or secure noise)."""
    if cfg.privacy.mode == "none" or cfg.privacy.secure_noise:
        return None
    return ("privacy.secure_noise is false: the DP noise and sampling are drawn from the run seed, so "
            "anyone with config.yaml can replay them (a simulation of the mechanism, not a privacy "
            "guarantee); privacy.secure_noise: true draws them from the operating system's entropy")


def _loop(ctx: Context, mech: privacy.Mechanism, rec: Recorder, state: ServerState, signals: stop.Signals,
          refused: str | None) -> Ending:
    """The mode's loop from `state`, unless a stop signal came during setup or the budget
    refused the first version."""
    cfg = ctx.cfg
    if signame := signals.agreed(ctx.comm):  # every rank stops before its first version
        rec.checkpoint_now(state)
        raise stop.Preempted(cfg.name, signame, cfg.run_dir, state.round)
    if refused is not None:
        rec.note(refused)
        return Ending(state, refused)
    if cfg.federation.mode == "sync":
        return sync.run_rounds(ctx, mech, rec, state, signals)
    if cfg.federation.clock == "wall":  # real asynchrony over MPI
        return wall.run_wall(ctx, mech, rec, state, signals)
    return virtual.run_virtual(ctx, mech, rec, state, signals)  # fedbuff | fedasync: virtual clock
