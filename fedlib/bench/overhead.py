"""Framework overhead: a fedlib round vs a bare torch loop doing the same local steps on the
same data (same model object, shards, batches, optimizer and clipping), one process.

Ratio = median fedlib round wall time (evaluation off; with and without the per-round
checkpoint) / median bare-loop time for the same clients. Target <= 1.05.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from .. import client, config, runner
from ..comm import LocalComm


def _cfg(out: Path, quick: bool, checkpoint_every: int) -> config.RunConfig:
    return config.load(None, {
        "name": f"overhead-ckpt{checkpoint_every}", "output_dir": str(out / "runs"),
        "data.max_length": 64, "data.max_train_samples": 128 if quick else 320,
        "model.name": "minilm", "client.batch_size": 16,
        "client.local_steps": 2 if quick else 4,
        "federation.num_clients": 2 if quick else 4, "federation.rounds": 3 if quick else 4,
        "federation.eval_every": 0, "federation.checkpoint_every": checkpoint_every,
    })


def bare_round(ctx: runner.Run, cfg: config.RunConfig, rnd: int) -> float:
    """The local steps of one round with nothing around them (no aggregation, no logging)."""
    t0 = time.perf_counter()
    model = ctx.model
    for cid in runner.sample_clients(cfg, rnd):
        shard = ctx.shards[cid]
        gen = torch.Generator().manual_seed(runner.client_seed(cfg.seed, rnd, cid))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = client.make_optimizer(params, cfg.client)
        model.train()
        for idx in client.batches(len(shard), cfg.client.batch_size,
                                  client.num_steps(len(shard), cfg.client), gen):
            loss = model(**shard.batch(idx)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.client.max_grad_norm or float("inf"))
            opt.step()
    return time.perf_counter() - t0


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    rows = []
    base = _cfg(out, quick, 0)
    ctx = runner.Run.build(base, LocalComm())
    bare_round(ctx, base, 1)  # warm-up
    bare = [bare_round(ctx, base, r) for r in range(1, base.federation.rounds + 1)]
    for ck in (0, 1):
        cfg = _cfg(out, quick, ck)
        rounds = runner.run(cfg, comm=LocalComm(), progress=False).rounds
        fed = rounds["round_s"].iloc[1:].median()  # round 1 pays one-off warm-up
        rows.append({
            "checkpoint_every": ck, "clients": cfg.federation.num_clients,
            "steps_per_client": cfg.client.local_steps, "params": int(rounds["params"].iloc[0]),
            "fedlib_round_s": fed, "bare_round_s": statistics.median(bare[1:]),
            "ratio": fed / statistics.median(bare[1:]),
            "checkpoint_s": rounds["checkpoint_s"].iloc[1:].median(),
            "pack_s": rounds["pack_s"].iloc[1:].median(),
            "aggregate_s": rounds["aggregate_s"].iloc[1:].median(),
        })
    return pd.DataFrame(rows)
