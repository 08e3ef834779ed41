"""`python -m fedlib bench comm`: the round's communication as fedlib does it, timed over ranks
and payload sizes, one client per rank — the study's setting, where adding a client adds a rank.

For each rank count R (one `mpiexec -n R` each, one torch thread a rank) and each payload (a flat
float32 buffer the size of a real model's trainable parameters, `payloads`), both aggregation
paths run a round's communication through fedlib's own wire code (`wire.exchange.make`):
- `collective`: every rank folds its client (pack), one barrier (wait) and one allreduce (comm);
- `p2p`: every rank sends its client's header and update to rank 0, which receives them slot by
  slot (comm) and folds them (pack); then a barrier (wait) and rank 0's broadcast (comm).
The server's step between the two is computation and is not run here. A barrier (untimed) starts
each round, so `comm_s` is communication, not another rank's lateness. Times are rank 0's phase
seconds, as rounds.csv records them (`comm_max_s`: the slowest rank's).

Replicates: `warmup` untimed rounds, then `reps` rounds of every (algorithm, payload) cell, each
replicate in a new random order (the same on every rank), so drift and caching do not line up
with one cell. On one box the ranks share memory (Open MPI's shared-memory transport), not a
network, and more ranks than cores are oversubscribed (8 ranks on this 2-core box): the numbers
say what fedlib's code paths cost here; `fedlib.lab.scaling` fits their latency-bandwidth form,
and the interconnect's published figures, not these seconds, carry it to a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import payloads as payload_sizes
from .common import LAUNCH_ENV

ALGORITHMS = ("collective", "p2p")
BUFFERS = 4  # float32 buffers of the payload's size a rank holds at once (the star's root: 4)


@dataclass(frozen=True)
class Grid:
    ranks: list[int]
    reps: int
    payloads: list[str]


SMALL = ["head (MiniLM probe)", "LoRA r8 (BERT-base)", "top-1 layer + head (MiniLM)", "ALBERT-base", "MiniLM"]
QUICK = Grid([2, 4, 8], 5, SMALL)
FULL = Grid([2, 4, 8], 10, [*SMALL, "BERT-base", "DeBERTa-v3-base"])


def _round(comm: Any, numel: int, algorithm: str, flat: Any) -> dict[str, float]:
    """One round's communication with one client on this rank: this rank's phase seconds and
    the bytes it handed to the network."""
    from ..wire import exchange
    from ..wire.aggregate import Update
    from ..wire.timer import Timer

    ex = exchange.make(comm, numel, algorithm)
    ex.begin([[r] for r in range(comm.size)])
    sent = comm.bytes_sent
    comm.barrier()  # every rank ready: what follows is the round's communication
    timer = Timer()
    ex.submit(Update(comm.rank, 0, flat, flat.buf, 1.0), timer)
    ex.finish(timer)
    if not ex.server_on_every_rank:
        ex.distribute(flat.buf, timer)
    s = timer.close()
    ex.close()
    return {
        "comm": s["comm"],
        "wait": s["wait"],
        "pack": s["pack"],
        "round": s["round"],
        "bytes": float(comm.bytes_sent - sent),
    }


def worker(spec: dict[str, Any]) -> None:
    """Under mpiexec: every cell `warmup` + `reps` times; rank 0 writes the rows to spec['out']."""
    import numpy as np
    import torch
    from torch import nn

    from ..wire.comm import MPIComm
    from ..wire.flat import FlatParams

    torch.set_num_threads(1)
    comm = MPIComm()
    cells = [(a, p) for a in spec["algorithms"] for p in spec["payloads"]]
    rng = np.random.default_rng(spec["seed"])  # the same order on every rank: collectives match
    rows = []
    flats: dict[str, FlatParams] = {}
    for rep in range(spec["warmup"] + spec["reps"]):
        for pos, i in enumerate(rng.permutation(len(cells))):
            algorithm, name = cells[i]
            numel = int(spec["payloads"][name])
            if name not in flats:
                flats[name] = FlatParams(nn.ParameterList([nn.Parameter(torch.ones(numel))]), bind=True)
            seen = comm.allgather(_round(comm, numel, algorithm, flats[name]))
            if rep >= spec["warmup"] and comm.rank == 0:
                rows.append(
                    {
                        "algorithm": algorithm,
                        "ranks": comm.size,
                        "clients": comm.size,
                        "payload": name,
                        "params": numel,
                        "payload_bytes": 4 * numel,
                        "rep": rep - spec["warmup"],
                        "order": pos,
                        "comm_s": seen[0]["comm"],
                        "comm_max_s": max(s["comm"] for s in seen),
                        "wait_s": seen[0]["wait"],
                        "pack_s": seen[0]["pack"],
                        "round_s": seen[0]["round"],
                        "bytes_rank0": seen[0]["bytes"],
                        "bytes_other_max": max((s["bytes"] for s in seen[1:]), default=0.0),
                    }
                )
    if comm.rank == 0:
        Path(spec["out"]).write_text(json.dumps(rows))


def memory_needed(ranks: int, floats: int) -> int:
    """Bytes the largest cell asks of the host: `BUFFERS` payload-sized buffers per rank."""
    return ranks * BUFFERS * 4 * floats


def _available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def measure(
    ranks: list[int],
    sizes: dict[str, int],
    reps: int,
    warmup: int = 1,
    algorithms: tuple[str, ...] = ALGORITHMS,
    seed: int = 0,
    timeout: int = 1800,
) -> pd.DataFrame:
    """Replicate rows for every (ranks, algorithm, payload): `sizes` maps a payload's name to its
    float count. Refuses, in one line, a grid whose largest cell would not fit in free memory."""
    need, free = memory_needed(max(ranks), max(sizes.values())), _available()
    if free is not None and need > 0.8 * free:
        raise MemoryError(
            f"bench comm: {max(ranks)} ranks x {BUFFERS} buffers of {max(sizes.values()):,} "
            f"floats need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free: drop the largest "
            f"payload or rank count"
        )
    env = {
        **os.environ,
        **{k: v for k, v in LAUNCH_ENV.items() if k not in os.environ},
        "OMP_NUM_THREADS": "1",
    }
    parts = []
    for r in ranks:
        with tempfile.TemporaryDirectory() as tmp:
            found = Path(tmp) / "rows.json"
            spec: dict[str, Any] = {
                "payloads": sizes,
                "algorithms": list(algorithms),
                "reps": reps,
                "warmup": warmup,
                "seed": seed,
                "out": str(found),
            }
            cmd = [
                str(Path(sys.executable).with_name("mpiexec")),
                "-n",
                str(r),
                sys.executable,
                "-m",
                "fedlib.bench.comm",
                "--worker",
                json.dumps(spec),
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"bench comm on {r} ranks failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
                )
            rows = pd.DataFrame(json.loads(found.read_text()))
        parts.append(
            rows.assign(
                cores=os.cpu_count(),
                oversubscribed=r > (os.cpu_count() or 1),
                launch_s=time.perf_counter() - t0,
            )
        )
    return pd.concat(parts, ignore_index=True)


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    """The bench's grid; in full, payloads whose largest cell would not fit in free memory are
    left out, and said so (`measure` itself refuses them)."""
    grid = QUICK if quick else FULL
    sizes = payload_sizes.sizes(grid.payloads)
    free = _available()
    if not quick and free is not None:
        keep = {n: s for n, s in sizes.items() if memory_needed(max(grid.ranks), s) <= 0.8 * free}
        for name in sizes.keys() - keep.keys():
            print(
                f"bench comm: {name} left out: {memory_needed(max(grid.ranks), sizes[name]) / 1e9:.1f} GB "
                f"at {max(grid.ranks)} ranks, {free / 1e9:.1f} GB free"
            )
        sizes = keep
    return measure(grid.ranks, sizes, grid.reps)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(json.loads(sys.argv[2]))
