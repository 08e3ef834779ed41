"""Synchronous FedAvg vs FedBuff on the wall clock, on 2 MPI ranks with stragglers
(`python -m fedlib bench async`), and a projection of both to 96 ranks.

Both arms train the same clients (speed factor f ~ U[1, 4], `participation.speed: uniform`).
FedBuff runs on the wall clock with `participation.emulate_speed`, so a straggler holds its rank
(f − 1) × its compute by sleeping: its seconds are measured. Synchronous rounds cannot sleep
(`emulate_speed` is a wall-clock key), so their emulated time is derived from what they wrote:
a round lasts as long as its slowest rank's Σ compute × f (`sim_s` in clients.csv) plus rank 0's
pack, comm and aggregate seconds, and each rank idles the difference.

Written to the output folder: `async.csv` (per arm: updates applied per second, idle fraction
of the server / rank 0 and of the other ranks, staleness; measured on 2 ranks and projected to
96), `async_ranks.csv` (idle fraction per rank, measured), `async_staleness.csv` (histogram).

The projection draws the runs' own speed law (participation.fate) and uses the measured
seconds per local step and the server's aggregate seconds per update; messages cost the
`fedlib.lab.scaling` network (payload / bandwidth + latency). Sync at p ranks: one client per
rank, each round the slowest f sets the pace, plus a ring allreduce. FedBuff with p − 1
workers and K = 10 (Nguyen et al.'s default): an event simulation of workers that train
continuously and one server that takes their updates one at a time (`simulate_wall`). Like
`scaling.project`, an order-of-magnitude guide: no contention, no topology.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config
from ..lab import scaling, sweep, virtual_time
from ..sim import participation
from . import common

PROJECTED_RANKS, PROJECTED_K = 96, 10
NETWORK = scaling.Network()  # a Slingshot-11-class NIC


def arms(runs: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """The two arms' overrides: 2 clients at once (one per rank for sync, a server and one
    worker for FedBuff), the same clients, seeds and speed law."""
    model = {"model.name": "bert-base-uncased",
             "model.overrides": ({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
                                  "intermediate_size": 128} if quick else
                                 {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
                                  "intermediate_size": 1024})}
    base = {"output_dir": str(runs), **model, "threads": 1, "data.max_length": 32,
            "data.max_train_samples": 128, "client.batch_size": 8, "client.local_steps": 4 if quick else 8,
            "client.lr": 1e-3, "federation.num_clients": 8, "federation.clients_per_round": 2,
            "federation.eval_every": 0, "federation.checkpoint_every": 0,
            "participation.speed": "uniform", "participation.speed_max": 4.0}
    steps = 6 if quick else 20
    return {"sync fedavg": {**base, "name": "sync", "federation.rounds": steps},
            "fedbuff wall": {**base, "name": "fedbuff", "federation.rounds": steps,
                             "federation.mode": "fedbuff", "federation.clock": "wall",
                             "federation.concurrency": 2, "federation.buffer_size": 2,
                             "participation.emulate_speed": True}}


def sync_emulated(rounds: pd.DataFrame, clients: pd.DataFrame) -> tuple[dict[str, float], pd.DataFrame]:
    """Synchronous rounds as if stragglers slept: (summary, idle fraction per rank)."""
    length, busy = virtual_time.emulated_round_s(rounds, clients)
    idle = (length.to_numpy()[:, None] - busy.to_numpy()).sum(axis=0) / length.sum()
    total = float(length.sum())
    return ({"updates_per_s": float(rounds["aggregated"].sum() / total), "total_s": total,
             "idle_server": float(idle[0]), "idle_workers": _mean(idle[1:]),
             "staleness_mean": 0.0, "staleness_max": 0},
            pd.DataFrame({"rank": busy.columns.astype(int), "idle_fraction": idle}))


def wall_measured(run_dir: Path) -> tuple[dict[str, float], pd.DataFrame, pd.Series]:
    """A wall-clock run as measured: (summary, idle fraction per rank, staleness per update).
    Rank 0 idles while it waits for arrivals; a worker while it waits for its next task."""
    rounds, log = pd.read_csv(run_dir / "rounds.csv"), pd.read_csv(run_dir / "arrivals.csv")
    total = float(rounds["virtual_s"].iloc[-1])
    ranks = int(rounds["ranks"].iloc[0])
    idle = [float(rounds["wait_s"].sum() / total)] + [
        float(log.loc[log["rank"] == r, "idle_s"].sum() / total) for r in range(1, ranks)]
    return ({"updates_per_s": len(log) / total, "total_s": total, "idle_server": idle[0],
             "idle_workers": _mean(idle[1:]),
             "staleness_mean": float(log["staleness"].mean()), "staleness_max": int(log["staleness"].max())},
            pd.DataFrame({"rank": range(ranks), "idle_fraction": idle}), log["staleness"])


def simulate_wall(duration: Callable[[int, int], float], workers: int, server_s: float, k: int,
                  updates: int) -> tuple[dict[str, float], list[int]]:
    """`workers` train continuously, all from version 0 at t = 0; task n of worker w lasts
    `duration(n, w)`. One server takes updates in arrival order, `server_s` each (then the
    worker's next task starts, from the current version); every k updates make a version.
    Returns (updates per second, server idle fraction, worker idle fraction) and the staleness
    of each update."""
    heap = [(duration(w, w), w, 0) for w in range(workers)]
    heapq.heapify(heap)
    free = server_idle = worker_wait = 0.0
    version, taus, n = 0, list[int](), workers
    while len(taus) < updates:
        finish, w, v = heapq.heappop(heap)
        start = max(free, finish)
        server_idle += start - free if finish > free else 0.0
        worker_wait += start - finish
        free = start + server_s
        taus.append(version - v)
        if len(taus) % k == 0:
            version += 1
        heapq.heappush(heap, (free + duration(n, w), w, version))
        n += 1
    return ({"updates_per_s": updates / free, "total_s": free, "idle_server": server_idle / free,
             "idle_workers": worker_wait / (workers * free)}, taus)


def project(cfg: config.RunConfig, step_s: float, steps: int, round_s: float, update_s: float,
            payload: float, ranks: int = PROJECTED_RANKS, k: int = PROJECTED_K, rounds: int = 50,
            net: scaling.Network = NETWORK) -> tuple[dict[str, dict[str, float]], list[int]]:
    """Both arms at `ranks` ranks with the config's speed law, `step_s` seconds per local step,
    `round_s` of server work per synchronous round and `update_s` per FedBuff update: (summary
    per arm, FedBuff's staleness per update)."""
    p, seed = cfg.participation, cfg.seed
    f = np.array([[participation.fate(p, seed, r + 1, c).speed for c in range(ranks)] for r in range(rounds)])
    task = f * step_s * steps
    length = task.max(axis=1) + round_s + scaling.project(payload, ranks, "collective", net)
    sync = {"updates_per_s": float(ranks * rounds / length.sum()), "total_s": float(length.sum()),
            "idle_server": float(((length - task[:, 0]) / length).mean()),
            "idle_workers": float(((length[:, None] - task[:, 1:]) / length[:, None]).mean()),
            "staleness_mean": 0.0, "staleness_max": 0}
    message = 2 * (payload / net.bandwidth + net.latency)  # the update in, the next weights out

    def duration(n: int, w: int) -> float:
        return participation.fate(p, seed, n + 1, w).speed * step_s * steps

    wall, taus = simulate_wall(duration, ranks - 1, update_s + message, k, rounds * ranks)
    wall = {**wall, "staleness_mean": float(np.mean(taus)), "staleness_max": int(max(taus))}
    return {"sync fedavg": sync, "fedbuff wall": wall}, taus


def _mean(xs: Any) -> float:
    """The mean over worker ranks (0.0 on one rank: it has none)."""
    return float(np.mean(xs)) if len(xs) else 0.0


def _hist(arm: str, ranks: int, taus: Any) -> pd.DataFrame:
    counts = pd.Series(list(taus)).value_counts().sort_index()
    return pd.DataFrame({"arm": arm, "ranks": ranks, "staleness": counts.index, "count": counts.to_numpy()})


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    runs = sweep.fresh_dir(out / "runs", "async")  # this invocation's runs: earlier ones stay
    over = arms(runs, quick)
    sync_rounds, _ = common.run(over["sync fedavg"], ranks=2)
    sync, sync_ranks = sync_emulated(sync_rounds, pd.read_csv(runs / "sync" / "clients.csv"))
    common.run(over["fedbuff wall"], ranks=2)
    wall, wall_ranks, wall_taus = wall_measured(runs / "fedbuff")
    rows = [{"arm": "sync fedavg", "ranks": 2, "source": "measured (emulated stragglers)", **sync},
            {"arm": "fedbuff wall", "ranks": 2, "source": "measured", **wall}]
    cfg = config.load(None, over["fedbuff wall"])
    clients = pd.read_csv(runs / "fedbuff" / "clients.csv")
    wall_rounds = pd.read_csv(runs / "fedbuff" / "rounds.csv")
    step_s = float((clients["compute_s"] / clients["steps"]).median())
    round_s = float(sync_rounds["aggregate_s"].median())  # the server step on the round's mean
    update_s = float((wall_rounds["aggregate_s"] / wall_rounds["aggregated"]).median())
    payload = float(wall_rounds["payload_bytes"].iloc[0])
    projected, taus = project(cfg, step_s, int(clients["steps"].iloc[0]), round_s, update_s, payload)
    rows += [{"arm": arm, "ranks": PROJECTED_RANKS, "source": f"projected (K={PROJECTED_K} for fedbuff)", **s}
             for arm, s in projected.items()]
    pd.concat([sync_ranks.assign(arm="sync fedavg"), wall_ranks.assign(arm="fedbuff wall")]).to_csv(
        out / "async_ranks.csv", index=False)
    pd.concat([_hist("fedbuff wall", 2, wall_taus), _hist("fedbuff wall", PROJECTED_RANKS, taus)]).to_csv(
        out / "async_staleness.csv", index=False)
    return pd.DataFrame(rows)
