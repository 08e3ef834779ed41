"""The round loop. Every rank runs this same code; which clients a rank trains, and every
random draw, is decided by (run seed, round, client id), never by the rank — so 1, 2 or 4
ranks give the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import (
    cache,
    checkpoint,
    client,
    config,
    data,
    models,
    participation,
    partition,
    privacy,
    provenance,
    rundir,
    seeds,
)
from .metrics import ClientRow, CsvLog, RoundRow, Timer, write_json
from .partition_report import report as part_report
from .strategies import ServerState, server_step
from .wire import exchange, launcher, placement
from .wire.aggregate import Update
from .wire.codec import WIRE, Codec, ResidualStore
from .wire.comm import Comm, make_comm
from .wire.flat import FlatParams


@dataclass
class Run:
    """Everything a round needs, built once per process."""

    cfg: config.RunConfig
    comm: Comm
    model: torch.nn.Module
    flat: FlatParams
    data: data.TextData
    shards: list[data.TextSplit]
    parts: list[np.ndarray]  # training-set indices of each client
    costs: placement.CostModel = field(default_factory=placement.CostModel)

    @classmethod
    def build(cls, cfg: config.RunConfig, comm: Comm) -> Run:
        tok = models.load_tokenizer(cfg.model)
        td = data.load(cfg.data, tok, vocab_size=models.preset_vocab(cfg.model), comm=comm)
        model = models.build(cfg.model, num_labels=td.num_labels, seed=cfg.seed)
        if cfg.model.cache_features:  # clients train the part above the cached frozen prefix
            model, td = cache.attach(model, td, cfg.model, comm)
        parts = partition.partition(td.train.labels.numpy(), cfg.federation.num_clients,
                                    cfg.partition, cfg.seed)
        shards = [td.train.subset(torch.as_tensor(p)) for p in parts]
        return cls(cfg, comm, model, FlatParams(model), td, shards, parts)

    def place(self, clients: list[int]) -> list[list[int]]:
        """Client -> rank plan for this round (federation.placement)."""
        if self.balances:
            steps = [client.num_steps(len(self.shards[c]), self.cfg.client) for c in clients]
            extra = self.comm.bcast_obj(self.costs.per_client_steps())  # rank 0's fit: one plan everywhere
            return placement.balanced(clients, [s + extra for s in steps], self.comm.size)
        return placement.round_robin(clients, self.comm.size)

    @property
    def balances(self) -> bool:
        return self.cfg.federation.placement == "balanced" and self.comm.size > 1

    def observe(self, per_rank: list[Any]) -> None:
        """Feed every rank's busy seconds (compute + pack + other) to the placement cost model."""
        if not self.balances:
            return
        for t, results, _ in per_rank:
            self.costs.observe(sum(r["steps"] for r in results), len(results),
                               t["compute"] + t["pack"] + t["other"])

    def evaluate(self, weights: torch.Tensor) -> tuple[float, float, float]:
        """(loss, accuracy, macro-F1) on the eval split, each rank scoring every size-th row."""
        self.flat.set(weights)
        n = self.data.num_labels
        rows = torch.arange(self.comm.rank, len(self.data.eval), self.comm.size)
        cm, loss_sum = client.confusion(self.model, self.data.eval.subset(rows), n)
        buf = np.concatenate([cm.reshape(-1).astype(np.float64), [loss_sum]])
        self.comm.allreduce(buf)
        cm = buf[:-1].reshape(n, n).round().astype(np.int64)
        acc, f1 = client.scores(cm)
        return float(buf[-1] / max(cm.sum(), 1)), acc, f1


RESUMABLE = {"federation.rounds", "federation.eval_every", "federation.checkpoint_every", "federation.export",
             "threads"}


def _changed_keys(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (besides those a resumed run may change)."""
    out = []
    for k in sorted(set(saved) | set(now)):
        key = f"{prefix}{k}"
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and k != "overrides":
            out += _changed_keys(a, b, key + ".")
        elif a != b and key not in RESUMABLE:
            out.append(key)
    return out


def _set_threads(cfg: config.RunConfig, comm: Comm) -> None:
    """`threads`, else the launcher's word (OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, cores / ranks
    per node under Open MPI, Slurm, PALS or Hydra)."""
    threads = cfg.threads if cfg.threads is not None else launcher.threads_per_rank(comm.size)
    if threads is not None:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Result:
    rounds: pd.DataFrame
    clients: pd.DataFrame
    summary: dict[str, Any]
    state: ServerState | None  # None when the tables came back from engines


def run(cfg: config.RunConfig, comm: Comm | None = None, resume: bool = False,
        progress: bool = True, overwrite: bool = False) -> Result:
    """Run (or resume) the federated training described by `cfg`; rank 0 writes the outputs.
    The run folder is locked for the run; a folder holding an earlier run's results is refused
    unless `overwrite` (its files are then moved aside, and deleted after the first new round)."""
    comm = comm or make_comm("auto", chunk_bytes=cfg.federation.chunk_mb << 20)
    _set_threads(cfg, comm)
    started = provenance.utc_now()
    lock, aside = rundir.claim_all(cfg.run_dir, comm, resume, overwrite)
    try:
        return _run(cfg, comm, resume, progress, started, aside)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: config.RunConfig, comm: Comm, resume: bool, progress: bool, started: str,
         aside: Path | None) -> Result:
    r0 = comm.rank == 0
    run_dir = cfg.run_dir
    ctx = Run.build(cfg, comm)
    fed = cfg.federation
    prov = provenance.collect(comm, str(next(ctx.model.parameters()).device), torch.get_num_threads(),
                              started)
    state = ServerState(ctx.flat.get())
    if resume:
        state, saved = checkpoint.load(run_dir)
        changed = _changed_keys(saved, cfg.to_dict())
        if changed:
            raise config.ConfigError(f"--resume: {', '.join(changed)} differ from the checkpoint in "
                                     f"{run_dir}; only federation.rounds may change on resume")
    mech = privacy.make(cfg, ctx.shards, ctx.model, comm)
    mech.plan(state)  # before writing anything: a resume that cannot keep the budget refuses here
    store = (ResidualStore(run_dir / "residuals", checkpoints=fed.checkpoint_every > 0)
             if fed.error_feedback and fed.payload_dtype != "fp32" else None)
    if r0:
        if store is not None and resume:  # back to the residuals the checkpoint covers
            store.restore(state.extra.get("residuals", {}))
        (run_dir / "config.yaml").write_text(provenance.header(prov) + config.dump(cfg))
        part_report(ctx.parts, ctx.data.train.labels.numpy(), ctx.data.num_labels).to_csv(
            run_dir / "partition.csv", index=False)
        rlog = CsvLog(run_dir / "rounds.csv", RoundRow, keep_upto=state.round if resume else None)
        clog = CsvLog(run_dir / "clients.csv", ClientRow, keep_upto=state.round if resume else None)
    comm.barrier()
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, store), fed.overlap)
    stopped = None
    diverged = False
    bar = tqdm(total=fed.rounds, initial=state.round, desc=cfg.name, disable=not (r0 and progress),
               unit="round", dynamic_ncols=True)
    try:
        while state.round < fed.rounds:
            rnd = state.round + 1
            if stopped := mech.admit(state, rnd):
                if r0:
                    checkpoint.save(run_dir, _with_residuals(state, store), cfg.to_dict())
                    tqdm.write(f"{cfg.name}: {stopped}")
                break
            before = state
            timer = Timer()
            sent0 = comm.bytes_sent
            fates = participation.fates(cfg, rnd)
            plan = ctx.place([f.client for f in fates if f.drop != "before"])
            fate = {f.client: f for f in fates}
            ex.begin(plan)
            global_w = state.weights
            penalty = (client.prox_term(ctx.flat.params, ctx.flat.views(global_w), cfg.client.mu)
                       if cfg.client.mu > 0 else None)
            results = []
            for cid in plan[comm.rank]:
                ctx.flat.set(global_w)
                f = fate[cid]
                steps = participation.steps_done(f, client.num_steps(len(ctx.shards[cid]), cfg.client))
                with timer("compute"):
                    res = mech.train(ctx.model, ctx.shards[cid], replace(cfg.client, local_steps=steps),
                                     seeds.seed(cfg.seed, seeds.Stream.CLIENT, rnd, cid), cid, penalty)
                sim_s = res.compute_s * f.speed
                out = participation.outcome(f, sim_s, cfg.participation.deadline_s,
                                            participation.finite(ctx.flat.params))
                results.append({**vars(res), "speed": f.speed, "sim_s": sim_s, "outcome": out})
                if out == "ok":
                    mech.bound(ctx.flat, global_w)
                    ex.submit(Update(cid, rnd, ctx.flat, global_w, mech.weight(res.num_samples)), timer)
                else:
                    ex.submit(None, timer)
            agg = ex.finish(timer)
            skipped = False
            if agg is not None:
                aggregated = agg.count
                skipped = not mech.always_releases and aggregated < cfg.participation.min_clients
                with timer("aggregate"):
                    if skipped:  # too few survivors: keep the weights, count the round
                        state = replace(state, round=rnd)
                    else:
                        state = server_step(state, mech.finish(agg, rnd).mean(), cfg.strategy)
            else:
                aggregated = 0
            if not ex.server_on_every_rank:
                received = ex.distribute(state.weights, timer)
                state = state if r0 else replace(state, weights=received, round=rnd)
            state = mech.record(state, comm)
            ev = (None, None, None)
            if not bool(torch.isfinite(state.weights).all()):
                stopped = f"diverged in round {rnd}: the global weights are not finite"
            elif fed.eval_every and (rnd % fed.eval_every == 0 or rnd == fed.rounds):
                with timer("eval"):
                    ev = ctx.evaluate(state.weights)
                if not np.isfinite(ev[0]):
                    stopped = f"diverged in round {rnd}: the evaluation loss is {ev[0]}"
            if diverged := stopped is not None:
                stopped += f"; stopped, the checkpoint keeps round {before.round} (the last finite state)"
                state = before
            keep = r0 and (diverged or (fed.checkpoint_every > 0 and (rnd % fed.checkpoint_every == 0
                                                                      or rnd == fed.rounds)))
            if keep:
                with timer("checkpoint"):
                    saved = _with_residuals(state, store)
                    checkpoint.write(run_dir, saved, cfg.to_dict())
            t = timer.close()
            per_rank = comm.allgather((t, results, comm.bytes_sent - sent0))
            ctx.observe(per_rank)
            if r0:
                row = _round_row(cfg, ctx, comm.size, rnd, fates, aggregated, skipped, per_rank, ev,
                                 mech.metrics(state, rnd))
                rlog.write(row)
                for rank, (_, res_list, _) in enumerate(per_rank):
                    for r in res_list:
                        clog.write(ClientRow(rnd, r["client_id"], rank, r["num_samples"], r["steps"],
                                             r["loss"], r["compute_s"], r["speed"], r["sim_s"], r["outcome"]))
                if keep:  # the rows are on disk before the checkpoint that covers them appears
                    rlog.sync()
                    clog.sync()
                    checkpoint.commit(run_dir)
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


def _with_residuals(state: ServerState, store: ResidualStore | None) -> ServerState:
    """The state to checkpoint: with error feedback, it names each client's residual file."""
    if store is None:
        return state
    return replace(state, extra={**state.extra, "residuals": store.manifest(state.round)})


def _round_row(cfg: config.RunConfig, ctx: Run, ranks: int, rnd: int, fates: list[participation.Fate],
               aggregated: int, skipped: bool, per_rank: list[Any], ev: tuple[Any, Any, Any],
               privacy_metrics: dict[str, float]) -> RoundRow:
    t0 = per_rank[0][0]
    trained = [r for _, res, _ in per_rank for r in res]
    kept = [r for r in trained if r["outcome"] == "ok"]
    losses = [(r["loss"], r["num_samples"]) for r in (kept or trained)]
    w = sum(n for _, n in losses)
    n_out = {k: sum(r["outcome"] == k for r in trained) for k in ("dropped", "late", "rejected")}
    sim_round, sim_wait = participation.simulated_times(
        [r["sim_s"] for r in kept], cfg.participation.deadline_s, n_out["late"] > 0)
    return RoundRow(
        round=rnd, algorithm=cfg.strategy.algorithm, model=cfg.model.name,
        aggregation=cfg.federation.aggregation, ranks=ranks, clients=cfg.federation.num_clients,
        sampled=len(fates), aggregated=aggregated, params=ctx.flat.numel,
        payload_bytes=ctx.flat.numel * torch.finfo(WIRE[cfg.federation.payload_dtype]).bits // 8,
        bytes_comm=int(sum(b for _, _, b in per_rank)),
        round_s=t0["round"], compute_s=t0["compute"], pack_s=t0["pack"], wait_s=t0["wait"],
        comm_s=t0["comm"], aggregate_s=t0["aggregate"], eval_s=t0["eval"],
        checkpoint_s=t0["checkpoint"], other_s=t0["other"],
        compute_max_s=max(t["compute"] for t, _, _ in per_rank),
        wait_max_s=max(t["wait"] for t, _, _ in per_rank),
        train_loss=sum(v * n for v, n in losses) / w if w else float("nan"),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2],
        dropped=n_out["dropped"] + sum(f.drop == "before" for f in fates), late=n_out["late"],
        rejected=n_out["rejected"], skipped=skipped, sim_round_s=sim_round, sim_wait_s=sim_wait,
        **privacy_metrics,
    )


def _finish(cfg: config.RunConfig, comm: Comm, ctx: Run, state: ServerState, stopped: str | None,
            diverged: bool, prov: dict[str, Any]) -> Result:
    run_dir = cfg.run_dir
    rounds = pd.DataFrame()
    clients = pd.DataFrame()
    summary: dict[str, Any] = {}
    if comm.rank == 0:
        rounds = pd.read_csv(run_dir / "rounds.csv")
        clients = pd.read_csv(run_dir / "clients.csv")
        scored = rounds.dropna(subset=["accuracy"])
        last = scored.iloc[-1] if len(scored) else {}
        summary = {
            "name": cfg.name, "rounds": int(state.round), "ranks": comm.size,
            **{k: float(last[k]) if k in last else None for k in ("accuracy", "macro_f1", "eval_loss")},
            "params": ctx.flat.numel,
            "partition_tv_mean": float(pd.read_csv(run_dir / "partition.csv")["tv"].mean()),
            "majority_rate": _majority_rate(ctx.data.eval),
            "mean_round_s": float(rounds["round_s"].mean()),
            "total_s": float(rounds["round_s"].sum()),
            "bytes_comm": int(rounds["bytes_comm"].sum()),
            "stopped": stopped,
            "diverged": diverged,
            **{k: float(rounds[k].iloc[-1]) for k in ("epsilon", "eps_max") if rounds[k].notna().any()},
            "provenance": {**prov, "ended": provenance.utc_now()},
        }
        write_json(run_dir / "summary.json", summary)
    return Result(rounds, clients, summary, state)


def _majority_rate(split: data.TextSplit) -> float:
    return float(torch.bincount(split.labels).max() / len(split))
