"""Tidy metric rows and the files they go to. One row per round (`rounds.csv`), one per
(round, client) (`clients.csv`); rows are appended and flushed as they happen, so a crash
loses nothing already measured.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wire.timer import PHASES, Timer

__all__ = ["PHASES", "ClientRow", "CsvLog", "RoundRow", "Timer", "write_json"]

@dataclass(frozen=True)
class RoundRow:
    round: int
    algorithm: str
    model: str
    aggregation: str
    ranks: int
    clients: int  # total clients in the federation
    sampled: int
    aggregated: int
    params: int  # trainable parameters communicated
    payload_bytes: int  # one update on the wire
    bytes_comm: int  # bytes handed to the network by all ranks this round
    round_s: float  # rank 0 wall time; = sum of the rank-0 phases below
    compute_s: float
    pack_s: float
    wait_s: float
    comm_s: float
    aggregate_s: float
    eval_s: float
    checkpoint_s: float
    other_s: float
    compute_max_s: float  # slowest rank's compute (the critical path)
    wait_max_s: float  # longest barrier wait of any rank (load imbalance)
    train_loss: float
    eval_loss: float | None
    accuracy: float | None
    macro_f1: float | None
    extra: str = ""  # JSON of wrapper metrics
    dropped: int = 0  # sampled clients that dropped out (before or during training)
    late: int = 0  # clients whose simulated time exceeded participation.deadline_s
    rejected: int = 0  # updates with NaN/Inf, not aggregated
    skipped: bool = False  # fewer than participation.min_clients survived: weights unchanged
    sim_round_s: float = 0.0  # simulated device time: slowest kept client (or the deadline)
    sim_wait_s: float = 0.0  # mean simulated idle time of kept clients waiting for the slowest
    epsilon: float | None = None  # privacy.mode=client: epsilon spent by the run so far
    eps_max: float | None = None  # privacy.mode=sample: max / mean epsilon of this round's clients
    eps_mean: float | None = None
    copy_s: float = 0.0  # rank 0's seconds staging device buffers through the host for the comm


@dataclass(frozen=True)
class ClientRow:
    round: int
    client_id: int
    rank: int
    num_samples: int
    steps: int
    loss: float
    compute_s: float
    speed: float = 1.0  # straggler factor: simulated time = compute_s x speed
    sim_s: float = 0.0
    outcome: str = "ok"  # ok, dropped (mid-training), late or rejected


class CsvLog:
    """Append-only CSV with a fixed header from a dataclass; rows past `keep_upto` are dropped
    on open (they belong to rounds a resumed run will redo)."""

    def __init__(self, path: Path, row_type: type, keep_upto: int | None = None) -> None:
        self.path = path
        self.fields = [f.name for f in dataclasses.fields(row_type)]
        rows: list[dict[str, str]] = []
        if keep_upto is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["round"]) <= keep_upto]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w", newline="")  # noqa: SIM115 - closed in close()
        self._w = csv.DictWriter(self._f, fieldnames=self.fields)
        self._w.writeheader()
        self._w.writerows(rows)
        self._f.flush()

    def write(self, row: Any) -> None:
        self._w.writerow(dataclasses.asdict(row))
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
