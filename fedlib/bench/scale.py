"""Many clients per core: 10 / 100 / 1,000 clients of MiniLM with the frozen prefix cached,
1 local step each, on 1 and 2 ranks — the part of the round that grows with the number of
clients (loading the global weights, the optimizer, packing) must stay small next to compute.

Two trainable parts: the head only (`freeze_layers: all`, pooled features cached) and the top
2 of MiniLM's 6 layers (`freeze_layers: 4`). Every run uses the same training examples (the
tiny scicite train set, 2,000 examples) and every client runs one step of 2 examples — the most
that 1,000 clients of 2 examples each can do — so only the client count changes (with a batch of
4, clients at 1,000 would run half-size steps and the ratio would compare unequal work).
Reported per row:
`overhead = (round − compute) / compute` of rank 0's last round (round 1 pays warm-up; on 2
ranks it includes the barrier wait for the slower rank, which `overhead_without_sync` leaves
out), and
peak RSS as the max over ranks of `ru_maxrss`. Targets at 1,000 clients: RSS ≤ 1.1 × RSS at
10 clients (`rss_vs_10`), overhead ≤ 0.10. `--quick` stops the top-2 rows at 100 clients
(1,000 clients x 1 step of 2 MiniLM layers: ~25 s a round on one free core, minutes under load);
the whole bench takes ~3 minutes on a free 2-core box.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import common

PARTS = {"head": "all", "top2": 4}


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    counts = (10, 100, 1000)
    rows = []
    for part, k in PARTS.items():
        for ranks in (1, 2):
            for n in counts[:2] if (quick and part != "head") else counts:
                over = {
                    "name": f"scale-{part}-{ranks}r-{n}", "output_dir": str(out / "runs"),
                    "model.name": "minilm", "model.freeze_layers": k, "model.cache_features": True,
                    "model.pooling": "mean", "data.max_length": 32,
                    # one torch thread a rank: two threads on 1 rank spin against anything else
                    # on a shared box (a head-only round went from 0.65 s to 48 s under load)
                    "threads": 1,
                    "client.batch_size": 2, "client.local_steps": 1, "client.optimizer": "sgd",
                    "client.lr": 1e-2, "federation.num_clients": n, "federation.rounds": 2,
                    "federation.eval_every": 0, "federation.checkpoint_every": 0,
                }
                rounds, peaks = common.run(over, ranks=ranks)
                last = rounds.iloc[-1]
                rows.append({
                    "part": part, "ranks": ranks, "clients": n, "params": int(last["params"]),
                    "round_s": last["round_s"], "compute_s": last["compute_s"],
                    "compute_max_s": last["compute_max_s"], "pack_s": last["pack_s"],
                    "comm_s": last["comm_s"], "wait_s": last["wait_s"], "other_s": last["other_s"],
                    "overhead": (last["round_s"] - last["compute_s"]) / last["compute_s"],
                    # the part that grows with clients: without the round's one barrier + allreduce
                    "overhead_without_sync": (last["round_s"] - last["compute_s"] - last["comm_s"]
                                              - last["wait_s"]) / last["compute_s"],
                    "peak_rss_mb_max": max(peaks) / 1024 if peaks else None,
                })
    df = pd.DataFrame(rows)
    ref = df[df["clients"] == 10].set_index(["part", "ranks"])["peak_rss_mb_max"]
    df["rss_vs_10"] = [r.peak_rss_mb_max / ref[(r.part, r.ranks)] for r in df.itertuples()]
    return df
