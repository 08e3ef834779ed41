"""Comm backends side by side: `federation.backend` mpi vs torch (gloo on CPU; on a GPU, MPI
with host staging — or none when CUDA-aware — vs NCCL), on 2 ranks.

- `allreduce`: median seconds to allreduce a flat float32 buffer, from 1M floats up to a
  bert-base-sized one (110M), and the share of it spent staging through the host (`copy_share`);
- `round`: round time and its comm/copy parts for the bert-base preset (random init), one
  local step per client, collective (and, in full mode, the p2p star), 8 clients (quick) or
  8 and 32 (full); `FEDLIB_BENCH_CLIENTS=8,32` overrides the client counts.

Ratios (`mpi_over_torch`) compare the two backends within one run of this benchmark.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from . import common

SIZES = [1 << 20, 16 << 20, 110_000_000]  # floats; the last is bert-base's trainable parameters


def _worker(sizes: list[int], reps: int, device: str) -> None:
    """Under mpiexec -n 2: time allreduce per backend and size; rank 0 prints JSON rows."""
    import torch

    from ..hpc.devices import resolve
    from ..wire.comm import MPIComm, synchronize
    from ..wire.torch_comm import TorchComm

    dev = resolve(device)
    mpi, tc = MPIComm(), TorchComm(device=dev)
    comms: dict[str, MPIComm | TorchComm] = {"mpi": mpi, "torch": tc}
    rows = []
    for name, comm in comms.items():
        lib = getattr(comm, "backend", "mpi")
        for n in sizes:
            buf = torch.ones(n, device=dev)
            comm.allreduce(buf)  # warm-up: connections, staging buffers
            times, copies = [], []
            for _ in range(reps):
                comm.barrier()
                c0, t0 = comm.copy_s, time.perf_counter()
                comm.allreduce(buf)
                synchronize(dev)
                times.append(time.perf_counter() - t0)
                copies.append(comm.copy_s - c0)
            med = statistics.median(times)
            rows.append({"part": "allreduce", "backend": name, "library": lib, "device": dev.type,
                         "floats": n, "seconds": med, "copy_share": statistics.median(copies) / med,
                         "gb_per_s": n * 4 / med / 1e9})
            del buf
    if mpi.rank == 0:
        print("ROWS", json.dumps(rows), flush=True)
    tc.close()


def _allreduce(quick: bool, device: str) -> pd.DataFrame:
    import subprocess

    reps = 3 if quick else 10
    cmd = [str(Path(sys.executable).with_name("mpiexec")), "-n", "2", sys.executable, "-m",
           "fedlib.bench.backends", "--worker", device, str(reps), *map(str, SIZES)]
    env = {**os.environ, **{k: v for k, v in common.LAUNCH_ENV.items() if k not in os.environ}}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"allreduce worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ROWS "))
    return pd.DataFrame(json.loads(line[5:]))


def _round_over(out: Path, clients: int, backend: str, aggregation: str, device: str, rounds: int
                ) -> dict[str, Any]:
    return {
        "name": f"backends-{backend}-{aggregation}-{clients}-{device}", "output_dir": str(out / "runs"),
        "model.name": "bert-base-uncased", "data.max_length": 16, "data.max_train_samples": 4 * clients,
        "client.batch_size": 2, "client.local_steps": 1, "client.optimizer": "sgd", "client.lr": 1e-3,
        "federation.rounds": rounds, "federation.eval_every": 0, "federation.checkpoint_every": 0,
        "partition.min_samples": 2, "federation.num_clients": clients, "device": device,
        "federation.backend": backend, "federation.aggregation": aggregation,
    }


def _rounds(out: Path, quick: bool, device: str) -> pd.DataFrame:
    env = os.environ.get("FEDLIB_BENCH_CLIENTS")
    counts = [int(c) for c in env.split(",")] if env else ([8] if quick else [8, 32])
    aggs = ["collective"] if quick else ["collective", "p2p"]
    rows = []
    for n in counts:
        for agg in aggs:
            for backend in ("mpi", "torch"):
                df, _ = common.run(_round_over(out, n, backend, agg, device, 2 if quick else 3), ranks=2)
                steady = df[df["round"] > 1]  # round 1 pays the connections and allocations
                rows.append({"part": "round", "backend": backend, "device": device, "clients": n,
                             "aggregation": agg, "seconds": steady["round_s"].mean(),
                             "comm_s": steady["comm_s"].mean(), "copy_s": steady["copy_s"].mean(),
                             "wait_s": steady["wait_s"].mean(),
                             "copy_share": steady["copy_s"].mean() / max(
                                 (steady["comm_s"] + steady["copy_s"]).mean(), 1e-12)})
    return pd.DataFrame(rows)


def with_ratio(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`mpi_over_torch`: mpi seconds / torch seconds for the same row key (> 1: torch faster);
    for rounds also `comm_mpi_over_torch` (round time on this shared box is mostly compute)."""
    out = df
    for col, name in (("seconds", "mpi_over_torch"), ("comm_s", "comm_mpi_over_torch")):
        if col in df:
            mpi = df[df["backend"] == "mpi"].set_index(keys)[col]
            tor = df[df["backend"] == "torch"].set_index(keys)[col]
            out = out.merge((mpi / tor).rename(name).reset_index(), on=keys, how="left")
    return out


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parts = []
    for dev in devices:
        parts.append(with_ratio(_allreduce(quick, dev), ["device", "floats"]))
        parts.append(with_ratio(_rounds(out, quick, dev), ["device", "clients", "aggregation"]))
    return pd.concat(parts, ignore_index=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker([int(s) for s in sys.argv[4:]], int(sys.argv[3]), sys.argv[2])
