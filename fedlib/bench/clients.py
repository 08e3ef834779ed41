"""Scaling with the number of clients on 2 MPI ranks: communicate + wait seconds per round,
bytes moved and per-rank peak RSS, collective vs p2p (rank-0 star).

bert-base-uncased preset (random init, 110M params), 1 local step of 2 x 16 tokens per
client so the round is dominated by what the federation adds. Ratios reported:
(comm+wait at the largest client count) / (at the smallest), per mode, and RSS growth.
Then the many-clients-per-core rows (fedlib.bench.scale: 10 / 100 / 1,000 cached MiniLM
clients on 1 and 2 ranks), told apart by the `experiment` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..lab import sweep
from . import common, scale


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    counts = (4, 16) if quick else (8, 32, 96)
    model = ({"model.name": "bert-base-uncased",
              "model.overrides": {"num_hidden_layers": 2, "hidden_size": 128,
                                  "num_attention_heads": 2, "intermediate_size": 256}}
             if quick else {"model.name": "bert-base-uncased"})
    rows = []
    runs = sweep.fresh_dir(out / "runs", "clients")  # this invocation's runs: earlier ones stay
    for mode in ("collective", "p2p"):
        for n in counts:
            over = {
                "name": f"clients-{mode}-{n}", "output_dir": str(runs), **model,
                "data.max_length": 16, "data.max_train_samples": 4 * n,
                "client.batch_size": 2, "client.local_steps": 1, "client.optimizer": "sgd",
                "client.lr": 1e-3, "federation.num_clients": n, "federation.rounds": 2,
                "federation.aggregation": mode, "federation.eval_every": 0,
                "federation.checkpoint_every": 0,
            }
            rounds, peaks = common.run(over, ranks=2)
            last = rounds.iloc[-1]  # round 1 pays warm-up
            rows.append({
                "mode": mode, "clients": n, "ranks": 2, "params": int(last["params"]),
                "payload_mb": last["payload_bytes"] / 2**20,
                "bytes_comm_mb": last["bytes_comm"] / 2**20,
                "round_s": last["round_s"], "compute_s": last["compute_s"],
                "comm_s": last["comm_s"], "wait_s": last["wait_s"], "wait_max_s": last["wait_max_s"],
                "comm_wait_s": last["comm_s"] + last["wait_s"],
                "peak_rss_mb_rank0": peaks[0] / 1024 if peaks else None,
                "peak_rss_mb_max": max(peaks) / 1024 if peaks else None,
            })
    df = pd.DataFrame(rows)
    lo, hi = min(counts), max(counts)
    for mode, g in df.groupby("mode"):
        g = g.set_index("clients")
        df.loc[df["mode"] == mode, f"comm_wait_ratio_{hi}_vs_{lo}"] = (
            g.loc[hi, "comm_wait_s"] / g.loc[lo, "comm_wait_s"])
        df.loc[df["mode"] == mode, f"rss_ratio_{hi}_vs_{lo}"] = (
            g.loc[hi, "peak_rss_mb_max"] / g.loc[lo, "peak_rss_mb_max"])
    return pd.concat([df.assign(experiment="comm"), scale.run(out, quick).assign(experiment="scale")],
                     ignore_index=True)
