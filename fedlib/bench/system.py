"""System-aware strategies, each on/off on the same work: bytes per round and
communicate+wait seconds on 2 MPI ranks for the plain collective baseline, the p2p star, and
each strategy (frozen lower half, LoRA, bf16 payload (+ error feedback) on the star, the star
with its messages overlapped with training, balanced placement under quantity skew), at
several client counts, for the bert-base preset (random init: time and bytes do not depend on
weights) and MiniLM, one short local step per client. On MiniLM and scicite: accuracy for
LoRA vs full fine-tuning and bf16 vs fp32 payloads (`system_accuracy.csv`), and the local-steps
trade-off — the same local steps per client split into fewer, longer rounds
(`system_local_steps.csv`). The grids and tables are the study's (fedlib.lab.system); this
module runs them on 2 MPI ranks. The latency-bandwidth fit of the round's communication over
ranks and payloads is `bench comm`'s (fedlib.bench.comm).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..lab.system import (  # noqa: F401  (notebooks/06 reads the grids here: fedlib.bench.system.X)
    LORA_LR,
    TIMED,
    accuracy_base,
    accuracy_grid,
    local_steps_base,
    local_steps_grid,
    sync_share,
    timing_base,
    timing_grid,
    wall_time,
    with_ratios,
)


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    from ..lab.engines import start

    clients = [4, 16] if quick else [8, 32, 96]
    models = ["bert-base-uncased"] if quick else ["bert-base-uncased", "minilm"]
    with start("mpi", n=2) as pool:
        timing = with_ratios(pd.concat([
            pool.sweep(timing_base(out, max(clients), m), timing_grid(clients, TIMED), desc=f"system {m}")
            for m in models], ignore_index=True))
        timing.to_csv(out / "system.csv", index=False)  # written early: the runs below are long
        base = accuracy_base(out, quick)
        acc = pool.sweep(base, accuracy_grid(rounds=base.federation.rounds), desc="system accuracy")
        acc.to_csv(out / "system_accuracy.csv", index=False)
        steps = pool.sweep(local_steps_base(out, quick), local_steps_grid(4 if quick else 16),
                           desc="system local steps")
    sync_share(steps).to_csv(out / "system_local_steps.csv", index=False)
    return timing
