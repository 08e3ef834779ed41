"""Accuracy: MiniLM on scicite, 8 IID clients with FedAvg vs centralized fine-tuning that sees
the same number of samples (one model, all the training data, `rounds` epochs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import config, runner
from ..lab import sweep
from ..sim import client
from ..wire.comm import LocalComm


def fed_config(out: Path, quick: bool) -> config.RunConfig:
    rounds = 2 if quick else 5
    return config.load(None, {
        "name": "accuracy-fedavg", "output_dir": str(sweep.fresh_dir(out / "runs", "accuracy")),
        "model.name": "minilm",
        "data.max_length": 64, "data.max_train_samples": 320 if quick else 960,
        "data.max_eval_samples": 300 if quick else 500,
        "client.lr": 2e-4, "client.batch_size": 16, "client.local_epochs": 1,
        "federation.num_clients": 8, "federation.rounds": rounds, "federation.checkpoint_every": 0,
        "federation.export": False,  # benchmarks never export (issue 18: disk)
    })


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    cfg = fed_config(out, quick)
    rounds = cfg.federation.rounds
    fed = runner.run(cfg, comm=LocalComm(), progress=False)
    ctx = runner.Context.build(cfg, LocalComm())  # same initial weights (seeded head)
    central = cfg.client.__class__(**{**vars(cfg.client), "local_epochs": rounds})
    res = client.train(ctx.model, ctx.data.train, central, seed=cfg.seed, client_id=-1)
    _, acc, f1 = ctx.evaluate(ctx.flat.get())
    seen = int(fed.clients["num_samples"].sum())
    return pd.DataFrame([
        {"setting": "federated (8 IID clients, FedAvg)", "rounds_or_epochs": rounds,
         "samples_seen": seen, "accuracy": fed.summary["accuracy"], "macro_f1": fed.summary["macro_f1"],
         "majority_rate": fed.summary["majority_rate"]},
        {"setting": "centralized", "rounds_or_epochs": rounds, "samples_seen": rounds * len(ctx.data.train),
         "accuracy": acc, "macro_f1": f1, "majority_rate": fed.summary["majority_rate"],
         "train_s": res.compute_s},
    ])
