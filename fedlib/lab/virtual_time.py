"""Learning curves on the virtual clock, so that synchronous and asynchronous runs compare in
the same simulated time (local steps of a speed-1 client; see fedlib.sim.vclock).

An async run records `virtual_s` per server step. A synchronous round lasts until its slowest
kept client: max over its clients of speed × steps, from clients.csv — the same speed draws
(round, client) an async task from version round − 1 gets — or until its deadline
(`participation.deadline_steps`, from the run's config.yaml) when a client was late.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import config


def curve(run_dir: str | Path) -> pd.DataFrame:
    """(round, virtual_s, accuracy, updates) of one run, evaluated rounds only; `updates` counts
    the client updates applied so far (equal budgets compare at equal updates)."""
    run_dir = Path(run_dir)
    rounds = pd.read_csv(run_dir / "rounds.csv")
    if "virtual_s" not in rounds or rounds["virtual_s"].isna().all():
        clients = pd.read_csv(run_dir / "clients.csv")
        until = (clients["speed"] * clients["steps"]).where(clients["outcome"] == "ok")
        deadline = config.load(run_dir / "config.yaml").participation.deadline_steps
        if deadline is not None:  # a round with a late client lasts until its deadline
            until = until.mask(clients["outcome"] == "late", deadline)
        length = until.groupby(clients["round"]).max()
        rounds["virtual_s"] = rounds["round"].map(length).fillna(0.0).cumsum()
    return _evaluated(rounds, "virtual_s")


def time_to(c: pd.DataFrame, target: float, clock: str = "virtual_s") -> float:
    """Time (column `clock`: virtual_s, or wall_s of `wall_curve`) of the first evaluation at or
    above `target` accuracy (inf: never)."""
    hit = c[c["accuracy"] >= target]
    return float(hit[clock].iloc[0]) if len(hit) else float(np.inf)


def within(c: pd.DataFrame, budget: float) -> pd.DataFrame:
    """The evaluations at or before virtual time `budget` (a relative 1e-9 for rounding)."""
    return c[c["virtual_s"] <= budget * (1 + 1e-9)]


def at(c: pd.DataFrame, budget: float) -> float:
    """Accuracy of the last evaluation at or before virtual time `budget` (NaN: none yet): an
    arm that may run longer is compared at the reference's time."""
    done = within(c, budget)
    return float(done["accuracy"].iloc[-1]) if len(done) else float("nan")


def emulated_round_s(rounds: pd.DataFrame, clients: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Synchronous rounds as if stragglers slept (they cannot: `emulate_speed` is a wall-clock
    key): a round lasts as long as its slowest rank's Σ compute × speed (`sim_s`) plus rank 0's
    pack, comm and aggregate seconds. Returns (seconds per round, each rank's busy seconds per
    round)."""
    busy = clients.pivot_table(index="round", columns="rank", values="sim_s", aggfunc="sum", fill_value=0.0)
    server = rounds.set_index("round")[["pack_s", "comm_s", "aggregate_s"]].sum(axis=1).reindex(busy.index)
    return busy.max(axis=1) + server, busy


def wall_curve(run_dir: str | Path) -> pd.DataFrame:
    """(round, wall_s, accuracy, updates) of one run, evaluated rounds only: a wall-clock
    asynchronous run as measured (its rounds.csv `virtual_s` holds elapsed seconds), a
    synchronous run with its stragglers' emulated seconds (`emulated_round_s`)."""
    run_dir = Path(run_dir)
    rounds = pd.read_csv(run_dir / "rounds.csv")
    if "virtual_s" in rounds and rounds["virtual_s"].notna().all():
        rounds["wall_s"] = rounds["virtual_s"]
    else:
        length, _ = emulated_round_s(rounds, pd.read_csv(run_dir / "clients.csv"))
        rounds["wall_s"] = rounds["round"].map(length).fillna(0.0).cumsum()
    return _evaluated(rounds, "wall_s")


def _evaluated(rounds: pd.DataFrame, clock: str) -> pd.DataFrame:
    """The evaluated rounds' (round, clock, accuracy, updates applied so far)."""
    rounds["updates"] = rounds["aggregated"].cumsum()
    kept = rounds.dropna(subset=["accuracy"])
    return kept[["round", clock, "accuracy", "updates"]].reset_index(drop=True)
