"""Tidy metric rows and the files they go to. One row per round (`rounds.csv`), one per
(round, client) (`clients.csv`); rows are appended and flushed as they happen, so a crash
loses nothing already measured.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from ..hpc.store import atomic_write, replacing
from ..wire.timer import PHASES, Timer

__all__ = ["PHASES", "ArrivalRow", "ClientRow", "CsvLog", "Phases", "RoundRow", "Timer", "phase_fields",
           "write_json"]

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
    dropped: int = 0  # sampled clients that dropped out (before or during training)
    late: int = 0  # clients whose simulated time exceeded participation.deadline_s
    rejected: int = 0  # updates with NaN/Inf, not aggregated
    skipped: bool = False  # fewer than participation.min_clients survived: weights unchanged
    sim_round_s: float = 0.0  # simulated device time: slowest kept client (or the deadline)
    sim_wait_s: float = 0.0  # mean simulated idle time of kept clients waiting for the slowest
    epsilon: float | None = None  # privacy.mode=client: epsilon spent by the run so far
    eps_max: float | None = None  # privacy.mode=sample: max / mean epsilon over every client so far
    eps_mean: float | None = None
    noise_multiplier: float | None = None  # privacy.mode=client: sigma of this round's noise
    sample_rate: float | None = None  # privacy.mode=client: Poisson rate q (epsilon = Opacus(history))
    copy_s: float = 0.0  # rank 0's seconds staging device buffers through the host for the comm
    mode: str = "sync"  # federation.mode; in fedbuff/fedasync a row is one server step (version)
    virtual_s: float | None = None  # async: simulated time at this step (local steps of a speed-1 client)
    staleness_mean: float | None = None  # async: mean / max staleness tau of the updates applied
    staleness_max: int | None = None


class Phases(TypedDict):
    """A rounds.csv row's ten phase-timing fields."""

    round_s: float
    compute_s: float
    pack_s: float
    wait_s: float
    comm_s: float
    copy_s: float
    aggregate_s: float
    eval_s: float
    checkpoint_s: float
    other_s: float


def phase_fields(seconds: dict[str, float]) -> Phases:
    """A row's ten phase-timing fields from one rank's closed `Timer` (`round` is its wall
    time) — the one place every loop's row takes them from."""
    s = seconds
    return Phases(round_s=s["round"], compute_s=s["compute"], pack_s=s["pack"], wait_s=s["wait"],
                  comm_s=s["comm"], copy_s=s["copy"], aggregate_s=s["aggregate"], eval_s=s["eval"],
                  checkpoint_s=s["checkpoint"], other_s=s["other"])


@dataclass(frozen=True)
class ClientRow:
    """What one client's training came to in a round (or, async, a server step): the one
    per-client record from the round body to clients.csv. `client.ClientResult` stays apart:
    training knows neither the round, the rank nor the client's fate."""

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
    staleness: int | None = None  # async: server versions between its model and the one it made (round)
    idle_s: float | None = None  # wall clock: seconds its rank waited for the server before this task


@dataclass(frozen=True)
class ArrivalRow:
    """arrivals.csv (federation.clock: wall): one row per update applied, in the order applied,
    so `fedlib.engine.wall.replay` can redo the run. Seconds are rank 0's, since the run started."""

    round: int  # the server version this update helped make (as in clients.csv)
    dispatch: int  # the server's n-th task
    client_id: int
    rank: int  # the rank that trained it
    from_version: int  # the server version it trained from (seed: from_version + 1, client)
    staleness: int  # round - 1 - from_version
    start_s: float  # the task was handed out
    end_s: float  # its update reached the server
    compute_s: float  # measured training seconds on its rank
    sleep_s: float  # participation.emulate_speed: (speed - 1) x compute_s slept after training
    idle_s: float  # its rank's seconds waiting for this task
    loss: float


class CsvLog:
    """Append-only CSV with a fixed header from a dataclass; rows past `keep_upto` are dropped
    on open (they belong to rounds a resumed run will redo). The kept rows are rewritten to a
    temporary file and renamed into place, so a crash while reopening loses nothing."""

    def __init__(self, path: Path, row_type: type, keep_upto: int | None = None) -> None:
        self.path = path
        self.fields = [f.name for f in dataclasses.fields(row_type)]
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_upto is not None and path.is_file():
            rows = _read_rows(path, self.fields, keep_upto)
            with replacing(path) as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(rows)
            self._f = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
            self._w = csv.DictWriter(self._f, fieldnames=self.fields)
        else:
            self._f = open(path, "w", newline="")  # noqa: SIM115 - closed in close()
            self._w = csv.DictWriter(self._f, fieldnames=self.fields)
            self._w.writeheader()
        self._f.flush()

    def write(self, row: Any) -> None:
        self._w.writerow(dataclasses.asdict(row))
        self._f.flush()

    def sync(self) -> None:
        """Make the rows written so far durable (before a checkpoint that covers them)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


RETIRED = frozenset({"extra"})  # columns earlier versions wrote (always empty): dropped on resume


def _read_rows(path: Path, fields: list[str], keep_upto: int) -> list[dict[str, str]]:
    """Rows of rounds <= keep_upto; a file fedlib did not write raises naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            head = reader.fieldnames or []
            unknown = [h for h in head if h not in fields and h not in RETIRED]
            if "round" not in head or unknown:
                raise ValueError(f"header {head[:5]}{'...' if len(head) > 5 else ''}")
            rows = []
            for r in reader:
                if None in r or not str(r["round"]).isdigit():
                    raise ValueError(f"line {reader.line_num}")
                if int(r["round"]) <= keep_upto:
                    rows.append({k: v for k, v in r.items() if k not in RETIRED})
            return rows
    except (ValueError, csv.Error) as e:
        raise ValueError(f"{path}: malformed metrics file ({e}); cannot resume from it") from None


def _finite(obj: Any) -> Any:
    """NaN and infinities -> None (JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (null for NaN/inf, never a bare NaN), written atomically."""
    text = json.dumps(_finite(json.loads(json.dumps(obj, default=str))), indent=2, allow_nan=False)
    write_text(path, text + "\n")


def write_text(path: Path, text: str) -> None:
    """Replace `path` atomically: a reader never sees half a file."""
    atomic_write(path, text)
