"""Framework overhead: a fedlib round vs a bare torch loop doing the same local steps on the
same data (same model object, shards, batches, optimizer and clipping), one process.

Ratio = fastest fedlib round wall time (evaluation off; with and without the per-round
checkpoint) / fastest bare-loop round for the same clients. The bare loop is timed before and
after the fedlib runs and the minimum is taken on both sides (as `timeit` does), because on a
shared machine the median mostly measures the neighbours. `round_over_compute` (median of
round wall time / the same round's training time) is the in-process view of the same overhead,
immune to neighbours because both are timed in the same round. Target <= 1.05.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from .. import config, runner, seeds
from ..lab import sweep
from ..sim import client, participation
from ..wire.comm import LocalComm


def _cfg(runs: Path, quick: bool, checkpoint_every: int) -> config.RunConfig:
    return config.load(None, {
        "name": f"overhead-ckpt{checkpoint_every}", "output_dir": str(runs),
        "data.max_length": 64, "data.max_train_samples": 128 if quick else 320,
        "model.name": "minilm", "client.batch_size": 16,
        "client.local_steps": 2 if quick else 4,
        "federation.num_clients": 2 if quick else 4, "federation.rounds": 3 if quick else 6,
        "federation.eval_every": 0, "federation.checkpoint_every": checkpoint_every,
        "federation.export": False,  # benchmarks never export (issue 18: disk)
    })


def bare_round(ctx: runner.Context, cfg: config.RunConfig, rnd: int) -> float:
    """The local steps of one round with nothing around them (no aggregation, no logging)."""
    t0 = time.perf_counter()
    model = ctx.model
    for cid in participation.sample_clients(cfg, rnd):
        shard = ctx.shards[cid]
        gen = seeds.generator(seeds.seed(cfg.seed, seeds.Stream.CLIENT, rnd, cid), seeds.Stream.BATCHES)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = client.make_optimizer(params, cfg.client)
        model.train()
        for idx in client.batches(len(shard), cfg.client.batch_size,
                                  client.num_steps(len(shard), cfg.client), gen):
            loss = model(**client.on(shard.batch(idx), ctx.device)).loss  # as client.train does
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.client.max_grad_norm or float("inf"))
            opt.step()
    return time.perf_counter() - t0


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    rows = []
    out = sweep.fresh_dir(out / "runs", "overhead")  # this invocation's runs: earlier ones stay
    base = _cfg(out, quick, 0)
    ctx = runner.Context.build(base, LocalComm())
    bare_round(ctx, base, 1)  # warm-up
    rnds = range(1, base.federation.rounds + 1)
    bare = [bare_round(ctx, base, r) for r in rnds]
    runs = {ck: runner.run(_cfg(out, quick, ck), comm=LocalComm(), progress=False).rounds for ck in (0, 1)}
    bare += [bare_round(ctx, base, r) for r in rnds]
    for ck, rounds in runs.items():
        cfg = _cfg(out, quick, ck)
        fed = rounds["round_s"].iloc[1:].min()  # round 1 pays one-off warm-up
        rows.append({
            "checkpoint_every": ck, "clients": cfg.federation.num_clients,
            "steps_per_client": cfg.client.local_steps, "params": int(rounds["params"].iloc[0]),
            "fedlib_round_s": fed, "bare_round_s": min(bare),
            "ratio": fed / min(bare), "fedlib_median_s": rounds["round_s"].iloc[1:].median(),
            "bare_median_s": statistics.median(bare),
            "round_over_compute": (rounds["round_s"] / rounds["compute_s"]).iloc[1:].median(),
            "checkpoint_s": rounds["checkpoint_s"].iloc[1:].median(),
            "pack_s": rounds["pack_s"].iloc[1:].median(),
            "aggregate_s": rounds["aggregate_s"].iloc[1:].median(),
        })
    return pd.DataFrame(rows)
