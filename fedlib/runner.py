"""A run: build the round context, resume (or refuse what a resume cannot keep), loop over
rounds (`fedlib.round.play`), evaluate, stop on divergence or budget, write the rows and the
checkpoint that covers them, export, summarize. Every rank runs this same code; rank 0 writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checkpoint, config, data, participation, privacy, provenance, round, rundir, stop
from . import device as devices
from .metrics import ClientRow, CsvLog, RoundRow, Timer, write_json
from .partition_report import report as part_report
from .resume import RESUMABLE
from .resume import check as check_resume
from .resume import record as record_resume
from .round import Run
from .strategies import ServerState
from .wire import exchange, launcher
from .wire.codec import Codec, ResidualStore
from .wire.comm import Comm, make_comm

__all__ = ["RESUMABLE", "Result", "comm_for", "run"]


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


@dataclass(frozen=True)
class Result:
    rounds: pd.DataFrame
    clients: pd.DataFrame
    summary: dict[str, Any]
    state: ServerState | None  # None when the tables came back from engines


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
                from . import async_loop
                return async_loop.run(cfg, comm, claim.resume, progress, started, claim.aside)
            return _run(cfg, comm, claim.resume, progress, started, claim.aside, signals)
        finally:
            if claim.lock is not None:
                claim.lock.release()


def _run(cfg: config.RunConfig, comm: Comm, resume: bool, progress: bool, started: str,
         aside: Path | None, signals: stop.Signals) -> Result:
    r0 = comm.rank == 0
    run_dir = cfg.run_dir
    ctx = Run.build(cfg, comm)
    fed = cfg.federation
    prov = provenance.collect(comm, str(next(ctx.model.parameters()).device), torch.get_num_threads(),
                              started)
    state = ServerState(ctx.flat.get())
    if resume:
        state, saved = checkpoint.load(run_dir)
        state = replace(state, weights=state.weights.to(ctx.device),  # saved from any device,
                        opt_state=devices.to(state.opt_state, ctx.device))  # loaded on the CPU
        check_resume(saved, cfg, run_dir)
    mech = privacy.make(cfg, ctx.shards, ctx.model, comm)
    mech.plan(state)  # before writing anything: a resume that cannot keep the budget refuses here
    store = (ResidualStore(run_dir / "residuals", checkpoints=fed.checkpoint_every > 0)
             if fed.error_feedback and fed.payload_dtype != "fp32" else None)
    if r0:
        if store is not None and resume:  # back to the residuals the checkpoint covers
            store.restore(state.extra.get("residuals", {}))
        if resume:  # the record keeps the original header and start; this resume is appended
            prov = record_resume(run_dir, cfg, saved, prov, state.round)
        else:
            (run_dir / "config.yaml").write_text(provenance.header(prov) + config.dump(cfg))
        data.write_label_names(run_dir, ctx.data.label_names)  # export needs no data folder later
        part_report(ctx.parts, ctx.data.train.labels.cpu().numpy(), ctx.data.num_labels).to_csv(
            run_dir / "partition.csv", index=False)
        rlog = CsvLog(run_dir / "rounds.csv", RoundRow, keep_upto=state.round if resume else None)
        clog = CsvLog(run_dir / "clients.csv", ClientRow, keep_upto=state.round if resume else None)
    comm.barrier()
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, store), fed.overlap,
                       device=ctx.device)
    stopped = None
    diverged = False
    bar = tqdm(total=fed.rounds, initial=state.round, desc=cfg.name, disable=not (r0 and progress),
               unit="round", dynamic_ncols=True)
    kept = state.round if resume else None  # the round checkpoint.pt holds
    try:
        while state.round < fed.rounds:
            if signame := signals.agreed(comm):  # every rank stops after the same round
                if r0 and kept != state.round:
                    _checkpoint(run_dir, _with_residuals(state, store), cfg, (rlog, clog), store)
                raise stop.Preempted(cfg.name, signame, run_dir, state.round)
            rnd = state.round + 1
            if stopped := mech.admit(state, rnd):
                if r0:
                    checkpoint.save(run_dir, _with_residuals(state, store), cfg.to_dict())
                    tqdm.write(f"{cfg.name}: {stopped}")
                break
            before = state
            timer = Timer()
            sent0, copy0 = comm.bytes_sent, comm.copy_s
            out = round.play(ctx, mech, ex, state, rnd, timer)
            state = out.state
            ev, stopped = score(ctx, state.weights, rnd, timer, f"in round {rnd}")
            if diverged := stopped is not None:
                stopped += f"; stopped, the checkpoint keeps round {before.round} (the last finite state)"
                state = mech.charge(before, state)  # its weights are dropped, its release is not
            keep = r0 and (diverged or (fed.checkpoint_every > 0 and (rnd % fed.checkpoint_every == 0
                                                                      or rnd == fed.rounds)))
            if keep:
                with timer("checkpoint"):
                    saved = _with_residuals(state, store)
                    checkpoint.write(run_dir, saved, cfg.to_dict())
            timer.move("comm", "copy", comm.copy_s - copy0)  # host staging, timed by the comm
            reports = comm.allgather(round.RankReport(timer.close(), out.clients, comm.bytes_sent - sent0))
            ctx.observe(reports)
            if r0:
                row = round.round_row(ctx, rnd, out, reports, ev, mech.metrics(state, rnd))
                rlog.write(row)
                for rank, rep in enumerate(reports):
                    for c in rep.clients:
                        clog.write(c.row(rnd, rank))
                if keep:  # the rows are on disk before the checkpoint that covers them appears
                    rlog.sync()
                    clog.sync()
                    checkpoint.commit(run_dir)
                    kept = saved.round
                    if store is not None:
                        store.restore(saved.extra["residuals"], saved.round)  # prune what it does not need
                rundir.discard(aside)
                aside = None
                bar.set_postfix(loss=f"{row.train_loss:.3f}",
                                acc="-" if row.accuracy is None else f"{row.accuracy:.3f}")
            bar.update(1)
            if diverged:
                if r0:
                    tqdm.write(f"{cfg.name}: {stopped}")
                break
    finally:
        bar.close()
        ex.close()
        if r0:
            rlog.close()
            clog.close()
    if r0 and fed.export and not diverged:
        from . import export

        if why := export.unsupported(cfg):
            tqdm.write(f"{cfg.name}: no Hugging Face export: {why}")
        else:
            export.write(cfg, state.weights, ctx.data.label_names, run_dir / export.FOLDER)
    return _finish(cfg, comm, ctx, state, stopped, diverged, prov)


def _checkpoint(run_dir: Path, saved: ServerState, cfg: config.RunConfig, logs: tuple[CsvLog, ...],
                store: ResidualStore | None) -> None:
    """Checkpoint a round whose rows are already written (a stop between rounds)."""
    checkpoint.write(run_dir, saved, cfg.to_dict())
    for log in logs:
        log.sync()
    checkpoint.commit(run_dir)
    if store is not None:
        store.restore(saved.extra["residuals"], saved.round)


Scores = tuple[float | None, float | None, float | None]  # (eval loss, accuracy, macro-F1)


def score(ctx: Run, weights: torch.Tensor, at: int, timer: Timer, where: str) -> tuple[Scores, str | None]:
    """Evaluate `weights` when round/step `at` is due (every eval_every and the last), and say
    why the run diverged `where`, or None: non-finite weights, or a non-finite evaluation loss.
    Both loops (sync rounds, async server steps) stop on the same rule."""
    fed = ctx.cfg.federation
    if not participation.finite([weights]):
        return (None, None, None), f"diverged {where}: the global weights are not finite"
    if not (fed.eval_every and (at % fed.eval_every == 0 or at == fed.rounds)):
        return (None, None, None), None
    with timer("eval"):
        ev = ctx.evaluate(weights)
    return ev, None if np.isfinite(ev[0]) else f"diverged {where}: the evaluation loss is {ev[0]}"


def _with_residuals(state: ServerState, store: ResidualStore | None) -> ServerState:
    """The state to checkpoint: with error feedback, it names each client's residual file."""
    if store is None:
        return state
    return replace(state, extra={**state.extra, "residuals": store.manifest(state.round)})


def _finish(cfg: config.RunConfig, comm: Comm, ctx: Run, state: ServerState, stopped: str | None,
            diverged: bool, prov: dict[str, Any]) -> Result:
    run_dir = cfg.run_dir
    rounds = pd.DataFrame()
    clients = pd.DataFrame()
    summary: dict[str, Any] = {}
    # a diverged run reports the state it kept (perhaps never scored, e.g. round 0): score it
    kept = ctx.evaluate(state.weights) if diverged and cfg.federation.eval_every else None
    if comm.rank == 0:
        rounds = pd.read_csv(run_dir / "rounds.csv")
        clients = pd.read_csv(run_dir / "clients.csv")
        scored = rounds.dropna(subset=["accuracy"])
        last = scored.iloc[-1] if len(scored) else {}
        if diverged:  # the metrics are the kept state's; the diverged round's go beside them
            last = dict(zip(METRICS, kept, strict=True)) if kept is not None else {}
        summary = {
            "name": cfg.name, "rounds": int(state.round), "ranks": comm.size,
            **{k: _finite(last[k]) if k in last else None for k in METRICS},
            "params": ctx.flat.numel,
            "partition_tv_mean": float(pd.read_csv(run_dir / "partition.csv")["tv"].mean()),
            "majority_rate": _majority_rate(ctx.data.eval),
            "eval_examples": len(ctx.data.eval),  # scored, of eval_split_size in the split
            "eval_split_size": ctx.data.eval_split_size or len(ctx.data.eval),
            "mean_round_s": float(rounds["round_s"].mean()),
            "total_s": float(rounds["round_s"].sum()),
            "bytes_comm": int(rounds["bytes_comm"].sum()),
            "stopped": stopped,
            "diverged": diverged,
            **({"diverged_round": {"round": int(rounds["round"].iloc[-1]),
                                   **{k: _finite(rounds[k].iloc[-1]) for k in METRICS}}} if diverged else {}),
            **{k: float(rounds[k].iloc[-1]) for k in ("epsilon", "eps_max") if rounds[k].notna().any()},
            **({"delta": cfg.privacy.delta} if cfg.privacy.mode != "none" else {}),  # ε is at this δ
            "provenance": {**prov, "ended": provenance.utc_now()},
        }
        write_json(run_dir / "summary.json", summary)
    return Result(rounds, clients, summary, state)


METRICS = ("eval_loss", "accuracy", "macro_f1")  # the order of Run.evaluate's tuple


def _finite(x: Any) -> float | None:
    """A metric for summary.json: None for a missing or non-finite value (strict JSON)."""
    return float(x) if x is not None and np.isfinite(float(x)) else None


def _majority_rate(split: data.TextSplit) -> float:
    return float(torch.bincount(split.labels).max() / len(split))
