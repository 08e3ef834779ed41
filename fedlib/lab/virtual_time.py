"""Learning curves on the virtual clock, so that synchronous and asynchronous runs compare in
the same simulated time (local steps of a speed-1 client; see fedlib.sim.vclock).

An async run records `virtual_s` per server step. A synchronous round lasts until its slowest
kept client: max over its clients of speed × steps, from clients.csv — the same speed draws
(round, client) an async task from version round − 1 gets — or until its deadline
(`participation.deadline_steps`, from the run's config.yaml) when a client was late.

"Faster" needs a target fixed before the runs and below the plateau (`pilot_target`: the mean over
a pilot's seeds of sync's accuracy at half its budget), the same for every arm and seed, and a
reference still learning (`learning_left`). Time to target (`paired_times`) divides every seed
by the same denominator, sync's time to the target, whether or not the arm reached it. Accuracy
at a time is scored on one grid shared by every arm and seed (`common_grid`, `on_grid`), so
arms that evaluate at different moments are compared at the same virtual times.
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


def end(c: pd.DataFrame, clock: str = "virtual_s") -> float:
    """When a run's last evaluation happened: how long it ran, as far as its curve can tell."""
    return float(c[clock].iloc[-1]) if len(c) else float("nan")


def half_budget(c: pd.DataFrame) -> float:
    """Accuracy at half the run's virtual time (its last evaluation at or before then)."""
    return at(c, end(c) / 2)


def learning_left(ref: pd.DataFrame) -> float:
    """Mean over seeds of (final accuracy − accuracy at half the budget) of the reference arm's
    curves (`ref`: one arm, a `seed` column): under 0.01 the reference had plateaued by half its
    budget, and a "reaches it sooner" claim would time evaluation noise."""
    gains = [float(c["accuracy"].iloc[-1]) - half_budget(c) for _, c in ref.groupby("seed") if len(c)]
    return float(np.mean(gains)) if gains else float("nan")


def pilot_target(ref: pd.DataFrame) -> float:
    """The time-to-target target, fixed before the compared runs from a pilot's reference-arm
    curves (`ref`: one arm, a `seed` column): the mean over seeds of its accuracy at half its
    budget, below the plateau, so that reaching it is still learning. The same target then
    serves every arm and every seed."""
    at_half = [half_budget(c) for _, c in ref.groupby("seed") if len(c)]
    if not at_half or not np.isfinite(at_half).all():
        raise ValueError("pilot_target: a pilot seed has no evaluation by half its budget")
    return float(np.mean(at_half))


def paired_times(curves: pd.DataFrame, ref_arm: str, target: float | None = None) -> pd.DataFrame:
    """Per (arm, seed) of `curves` (columns arm, seed, virtual_s, accuracy): the time to `target`
    as a ratio to the reference arm's time to it in the same seed, always over the same
    denominator. `target` None: each seed's reference final accuracy (chosen after the run).

    kind: `reached` (ratio = t_arm / t_ref); `arm never reached` (the ratio is at least
    end_arm / t_ref: a lower bound); `ref never reached` (at most t_arm / end_ref: an upper
    bound); `neither` (no ratio, NaN)."""
    rows = []
    for seed, g in curves.groupby("seed", sort=True):
        ref = g[g["arm"] == ref_arm]
        if not len(ref):
            raise ValueError(f"paired_times: seed {seed} has no {ref_arm!r} curve")
        goal = float(ref["accuracy"].iloc[-1]) if target is None else float(target)
        t_ref, end_ref = time_to(ref, goal), end(ref)
        for arm, c in g.groupby("arm", sort=False):
            t, stop = time_to(c, goal), end(c)
            if np.isfinite(t_ref):
                kind, ratio = ("reached", t / t_ref) if np.isfinite(t) else ("arm never reached",
                                                                             stop / t_ref)
            else:
                kind, ratio = ("ref never reached", t / end_ref) if np.isfinite(t) else ("neither", np.nan)
            rows.append({"seed": seed, "arm": arm, "target": goal, "time_s": t, "end_s": stop,
                         "ref_time_s": t_ref, "ref_end_s": end_ref, "ratio": ratio, "kind": kind})
    return pd.DataFrame(rows)


def common_grid(curves: pd.DataFrame, points: int = 201, clock: str = "virtual_s") -> np.ndarray:
    """`points` evenly spaced times from 0 to the earliest end among the (arm, seed) runs: a
    time every run reached, so every arm is scored at every grid point."""
    stop = curves.groupby(["arm", "seed"])[clock].max().min()
    return np.linspace(0.0, float(stop), points)


def on_grid(curves: pd.DataFrame, grid: np.ndarray, clock: str = "virtual_s") -> pd.DataFrame:
    """(arm, seed, `clock`, accuracy) at every grid time: each run's last evaluation at or
    before it (NaN before its first) — what every arm is scored on."""
    out = []
    for (arm, seed), c in curves.groupby(["arm", "seed"], sort=False):
        c = c.sort_values(clock)
        idx = np.searchsorted(c[clock].to_numpy(), np.asarray(grid) * (1 + 1e-9), side="right") - 1
        acc = np.where(idx >= 0, c["accuracy"].to_numpy()[np.maximum(idx, 0)], np.nan)
        out.append(pd.DataFrame({"arm": arm, "seed": seed, clock: grid, "accuracy": acc}))
    return pd.concat(out, ignore_index=True)


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
