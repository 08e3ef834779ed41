"""The round loop. Every rank runs this same code; which clients a rank trains, and every
random draw, is decided by (run seed, round, client id), never by the rank — so 1, 2 or 4
ranks give the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checkpoint, client, config, data, models, participation, partition, privacy
from . import device as devices
from .metrics import ClientRow, CsvLog, RoundRow, Timer, write_json
from .partition_report import report as part_report
from .strategies import ServerState, server_step
from .wire import exchange, placement
from .wire.aggregate import Update
from .wire.codec import WIRE, Codec, ResidualStore
from .wire.comm import Comm, make_comm
from .wire.flat import FlatParams


def client_seed(seed: int, rnd: int, cid: int) -> int:
    return int(np.random.SeedSequence([seed, rnd, cid]).generate_state(1)[0])


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
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # model, buffers, server state

    @classmethod
    def build(cls, cfg: config.RunConfig, comm: Comm) -> Run:
        tok = models.load_tokenizer(cfg.model)
        td = data.load(cfg.data, tok, vocab_size=models.preset_vocab(cfg.model))
        dev = devices.resolve(cfg.device)
        model = models.build(cfg.model, num_labels=td.num_labels, seed=cfg.seed).to(dev)
        parts = partition.partition(td.train.labels.cpu().numpy(), cfg.federation.num_clients,
                                    cfg.partition, cfg.seed)
        shards = [td.train.subset(torch.as_tensor(p)) for p in parts]
        return cls(cfg, comm, model, FlatParams(model), td, shards, parts, device=dev)

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
        buf = torch.from_numpy(np.concatenate([cm.reshape(-1).astype(np.float64), [loss_sum]]))
        self.comm.allreduce(buf)
        buf = buf.cpu().numpy()
        cm = buf[:-1].reshape(n, n).round().astype(np.int64)
        acc, f1 = client.scores(cm)
        return float(buf[-1] / max(cm.sum(), 1)), acc, f1


RESUMABLE = {"federation.rounds", "federation.eval_every", "federation.checkpoint_every", "threads",
             "device", "federation.backend"}


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
    threads = cfg.threads
    if threads is None and comm.size > 1:
        local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", comm.size))
        threads = max(1, (os.cpu_count() or 1) // local)
    if threads is not None:
        torch.set_num_threads(threads)


def comm_for(cfg: config.RunConfig) -> Comm:
    """The Comm for federation.backend on the ranks the launcher started (one process: local)."""
    kind = "torch" if cfg.federation.backend == "torch" else "auto"
    return make_comm(kind, chunk_bytes=cfg.federation.chunk_mb << 20, device=devices.resolve(cfg.device))


@dataclass(frozen=True)
class Result:
    rounds: pd.DataFrame
    clients: pd.DataFrame
    summary: dict[str, Any]
    state: ServerState | None  # None when the tables came back from engines


def run(cfg: config.RunConfig, comm: Comm | None = None, resume: bool = False,
        progress: bool = True) -> Result:
    """Run (or resume) the federated training described by `cfg`; rank 0 writes the outputs."""
    comm = comm or comm_for(cfg)
    _set_threads(cfg, comm)
    r0 = comm.rank == 0
    run_dir = cfg.run_dir
    ctx = Run.build(cfg, comm)
    fed = cfg.federation
    state = ServerState(ctx.flat.get())
    if resume:
        state, saved = checkpoint.load(run_dir)
        state = replace(state, weights=state.weights.to(ctx.device),  # saved from any device,
                        opt_state=devices.to(state.opt_state, ctx.device))  # loaded on the CPU
        changed = _changed_keys(saved, cfg.to_dict())
        if changed:
            raise config.ConfigError(f"--resume: {', '.join(changed)} differ from the checkpoint in "
                                     f"{run_dir}; only federation.rounds may change on resume")
    if r0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.dump(cfg))
        part_report(ctx.parts, ctx.data.train.labels.cpu().numpy(), ctx.data.num_labels).to_csv(
            run_dir / "partition.csv", index=False)
        rlog = CsvLog(run_dir / "rounds.csv", RoundRow, keep_upto=state.round if resume else None)
        clog = CsvLog(run_dir / "clients.csv", ClientRow, keep_upto=state.round if resume else None)
    store = (ResidualStore(run_dir / "residuals") if fed.error_feedback and fed.payload_dtype != "fp32"
             else None)
    ex = exchange.make(comm, ctx.flat.numel, fed.aggregation, Codec(fed.payload_dtype, store), fed.overlap,
                       device=ctx.device)
    mech = privacy.make(cfg, ctx.shards, ctx.model)
    stopped = None
    bar = tqdm(total=fed.rounds, initial=state.round, desc=cfg.name, disable=not (r0 and progress),
               unit="round", dynamic_ncols=True)
    try:
        while state.round < fed.rounds:
            rnd = state.round + 1
            if stopped := mech.admit(state, rnd):
                if r0:
                    checkpoint.save(run_dir, state, cfg.to_dict())
                    tqdm.write(f"{cfg.name}: {stopped}")
                break
            timer = Timer()
            sent0, copy0 = comm.bytes_sent, comm.copy_s
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
                                     client_seed(cfg.seed, rnd, cid), cid, penalty)
                sim_s = res.compute_s * f.speed
                out = participation.outcome(f, sim_s, cfg.participation.deadline_s,
                                            participation.finite(ctx.flat.params))
                results.append({**vars(res), "speed": f.speed, "sim_s": sim_s, "outcome": out})
                if out == "ok":
                    mech.bound(ctx.flat, global_w)
                    ex.submit(Update(cid, ctx.flat, global_w, mech.weight(res.num_samples)), timer)
                else:
                    ex.submit(None, timer)
            agg = ex.finish(timer)
            skipped = False
            if agg is not None:
                aggregated = agg.count
                skipped = aggregated < cfg.participation.min_clients
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
            if fed.eval_every and (rnd % fed.eval_every == 0 or rnd == fed.rounds):
                with timer("eval"):
                    ev = ctx.evaluate(state.weights)
            if r0 and fed.checkpoint_every and (rnd % fed.checkpoint_every == 0 or rnd == fed.rounds):
                with timer("checkpoint"):
                    checkpoint.save(run_dir, state, cfg.to_dict())
            timer.move("comm", "copy", comm.copy_s - copy0)  # host staging, timed by the comm
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
                bar.set_postfix(loss=f"{row.train_loss:.3f}",
                                acc="-" if row.accuracy is None else f"{row.accuracy:.3f}")
            bar.update(1)
    finally:
        bar.close()
        ex.close()
        if r0:
            rlog.close()
            clog.close()
    return _finish(cfg, comm, ctx, state, stopped)


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
        checkpoint_s=t0["checkpoint"], other_s=t0["other"], copy_s=t0["copy"],
        compute_max_s=max(t["compute"] for t, _, _ in per_rank),
        wait_max_s=max(t["wait"] for t, _, _ in per_rank),
        train_loss=sum(v * n for v, n in losses) / max(w, 1),
        eval_loss=ev[0], accuracy=ev[1], macro_f1=ev[2],
        dropped=n_out["dropped"] + sum(f.drop == "before" for f in fates), late=n_out["late"],
        rejected=n_out["rejected"], skipped=skipped, sim_round_s=sim_round, sim_wait_s=sim_wait,
        **privacy_metrics,
    )


def _finish(cfg: config.RunConfig, comm: Comm, ctx: Run, state: ServerState, stopped: str | None
            ) -> Result:
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
            **{k: float(rounds[k].iloc[-1]) for k in ("epsilon", "eps_max") if rounds[k].notna().any()},
        }
        write_json(run_dir / "summary.json", summary)
    return Result(rounds, clients, summary, state)


def _majority_rate(split: data.TextSplit) -> float:
    return float(torch.bincount(split.labels).max() / len(split))
