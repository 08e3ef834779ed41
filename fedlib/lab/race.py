"""08's race: every arm trains the same clients under the same speed draws for the same virtual
time — the synchronous run's, per seed — and is scored against one target accuracy fixed before
the compared runs.

- `plan`: the sweep's entries. The reference (synchronous FedAvg) runs its `rounds`; every other
  arm runs the fewest server steps whose clock reaches the reference's virtual time in the same
  seed (`schedule`: the clock does not depend on training), so none is cut short or runs far
  past it.
- The target: a number given in the parameters, or `virtual_time.pilot_target` of a pilot — the
  reference arm alone on seeds of its own, run before the compared runs — the mean of its
  accuracy at half its budget: below its plateau, the same for every arm and seed.
- `score`: per (arm, seed), the accuracy at the reference's virtual time (the last evaluation at
  or before it) and its difference from the reference's, and the time to the target over the
  reference's (`virtual_time.paired_times`: one denominator, censoring kinds). The claims table
  judges these rows (`claims.async_claims`, `time_claims`).
- `goal`: FedBuff's authors report it 3.3× more efficient than synchronous FL (Nguyen et al.
  2022): does fedlib's FedBuff reach the target in at most `GOAL` × sync's virtual time with
  accuracy non-inferior at sync's time — said either way.

An arm is evaluated every few server steps, so its time to the target is the time of its first
evaluation at or above it: an evaluation every `eval_every` × concurrency updates makes an
asynchronous arm's time late by up to that many updates (against the arm, never for it); the
reference is evaluated after every round, the only times its model changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .. import config
from . import figures, schedule, stats, sweep, time_claims, trainable, virtual_time
from .verdict import FAILS, HOLDS, NO_LEARNING, OPEN, TOLERANCES, budget, produced, row

SYNC = "sync FedAvg"  # the reference arm (claims.SYNC_ARM)
GOAL = TOLERANCES["goal"].hi  # FedBuff's goal: time to the target at most this fraction of sync's
GOAL_TOL = TOLERANCES["goal"].text


def plan(base: config.RunConfig, arms: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
         ref: str = SYNC) -> list[dict[str, Any]]:
    """Entries for `sweep.run_grid` (no `seeds`: each entry has its own): for each arm, then
    each seed, the arm's overrides, its `seed` and `federation.rounds` — the reference's own, or
    the fewest server steps that reach the reference's virtual time in that seed. The schedule is
    read with the same toy overrides the sweep applies."""
    if ref not in arms or arms[ref].get("federation.mode", "sync") != "sync":
        raise ValueError(f"race.plan: the reference arm {ref!r} must be one of the arms, synchronous")
    base = config.replace(base, **sweep.toy_overrides())
    over = {a: {k: v for k, v in o.items() if "." in k} for a, o in arms.items()}
    budgets = {}
    for s in seeds:
        cfg = config.replace(base, seed=s, **over[ref])
        budgets[s] = schedule.sync_time(cfg, cfg.federation.rounds)
    out = []
    for arm, o in arms.items():
        for s in seeds:
            cfg = config.replace(base, seed=s, **over[arm])
            rounds = cfg.federation.rounds if arm == ref else schedule.steps_to(cfg, budgets[s])
            out.append({"arm": arm, **o, "seed": s, "federation.rounds": rounds})
    return out


def curves(runs: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """Every run's evaluated rounds on the virtual clock (`virtual_time.curve`), with arm and seed."""
    dirs = figures.run_dirs(runs, root)
    return pd.concat([virtual_time.curve(d).assign(arm=a, seed=s)
                      for a, s, d in zip(runs["arm"], runs["seed"], dirs, strict=True)], ignore_index=True)


def score(c: pd.DataFrame, target: float, ref: str = SYNC) -> pd.DataFrame:
    """Per (arm, seed) of the curves `c`: the reference's virtual time (`budget_s`, its run's
    end), the arm's accuracy at it and the difference from the reference's, the client updates
    it had applied by then, and `virtual_time.paired_times` at `target` (target, time_s,
    ratio, kind, ...)."""
    rows = []
    for seed, g in c.groupby("seed", sort=True):
        r = g[g["arm"] == ref]
        if not len(r):
            raise ValueError(f"race.score: seed {seed} has no {ref!r} curve")
        horizon, ref_acc = virtual_time.end(r), float(r["accuracy"].iloc[-1])
        for arm, a in g.groupby("arm", sort=False):
            acc = virtual_time.at(a, horizon)
            done = virtual_time.within(a, horizon)
            rows.append({"arm": arm, "seed": seed, "budget_s": horizon, "accuracy_at_budget": acc,
                         "acc_diff": acc - ref_acc, "virtual_s": virtual_time.end(a),
                         "updates_at_budget": int(done["updates"].max()) if len(done) else 0})
    times = virtual_time.paired_times(c, ref, target)
    return pd.DataFrame(rows).merge(times, on=["arm", "seed"], how="left")


def summary(paired: pd.DataFrame, ref: str = SYNC) -> pd.DataFrame:
    """One row per arm: accuracy at the reference's time and Δ (t-intervals over seeds), the time
    ratio's geometric mean and log-scale interval (bounded seeds at their bound), the seeds that
    reached the target, and the time rule's verdict (`time_claims.rule`) before the plateau gate."""
    out = []
    for arm, g in paired.groupby("arm", sort=False):
        acc, diff = stats.interval(g["accuracy_at_budget"]), stats.interval(g["acc_diff"])
        r: dict[str, Any] = {"arm": arm, "n": len(g), "accuracy_at_budget": acc.mean,
                             "accuracy_lo": acc.lo, "accuracy_hi": acc.hi, "acc_diff": diff.mean,
                             "acc_diff_lo": diff.lo, "acc_diff_hi": diff.hi,
                             "updates_at_budget": float(g["updates_at_budget"].mean()),
                             "reached": int((g["kind"] == "reached").sum())}
        if arm != ref:
            iv, verdict, why = time_claims.rule(g)
            r.update(time_ratio=iv.mean if iv else math.nan, time_ratio_lo=iv.lo if iv else math.nan,
                     time_ratio_hi=iv.hi if iv else math.nan, time_rule=verdict, time_why=why)
        out.append(r)
    return pd.DataFrame(out)


def goal(arm: str, paired: pd.DataFrame, left: float, runs: pd.DataFrame | None = None,
         bound: float = GOAL) -> dict:
    """Does `arm` reach the target in at most `bound` × the reference's virtual time, with its
    accuracy at the reference's time non-inferior? One claims-style row (`verdict.row`).

    Time: `time_claims.rule` on `paired`'s rows of `arm` with `bound` in place of 1 (the same
    log-ratio interval and censoring: a seed the arm never reached can make it fail, never hold).
    Accuracy: the t-interval of Δ accuracy against the non-inferiority margin. Holds when both
    do; does not hold when either fails; "no learning left" (`time_claims.GAIN`) as the time rows."""
    g = paired[paired["arm"] == arm]
    claim = f"{arm} reaches the target in ≤ {bound:g}× sync FedAvg's virtual time, accuracy non-inferior"
    measure = "time to target / sync's (geometric mean, log-scale t-interval); Δ accuracy at sync's time"
    prov, bud = {}, ""
    if runs is not None and len(runs):  # what produced it, and what trained (as every claim says)
        claim += f" — {trainable.text(runs)}"
        prov, bud = produced(runs), budget(runs)
    iv, fast, why = time_claims.rule(g, bound)
    if iv is None or not iv.resolved:
        return row(claim, measure, None, GOAL_TOL, bud, OPEN, f"no time interval: {why}", prov)
    d, margin = stats.interval(g["acc_diff"]), TOLERANCES["accuracy"].lo
    acc = HOLDS if d.lo >= margin else FAILS if d.hi < margin else OPEN
    verdict = FAILS if FAILS in (fast, acc) else HOLDS if fast == acc == HOLDS else OPEN
    note = (f"time ratio {iv.mean:.3g} [{iv.lo:.3g}, {iv.hi:.3g}] vs ≤ {bound:g}: {fast} ({why}); Δ accuracy "
            f"{d.mean:+.3g} [{d.lo:+.3g}, {d.hi:+.3g}] vs ≥ {margin:g}: {acc}; "
            f"{int((g['kind'] == 'reached').sum())} of {len(g)} seeds reached the target "
            f"{float(g['target'].iloc[0]):.4g}; sync gains {left:.3g} after half its budget")
    if math.isfinite(left) and left < time_claims.GAIN:
        return row(claim, measure, iv, GOAL_TOL, bud, NO_LEARNING, f"by the rule alone: {verdict}; {note}",
                   prov)
    return row(claim, measure, iv, GOAL_TOL, bud, verdict, note, prov)


def grid(c: pd.DataFrame, points: int = 101) -> pd.DataFrame:
    """The curves on one virtual-time grid every run reached (`virtual_time.common_grid`)."""
    return virtual_time.on_grid(c, virtual_time.common_grid(c, points))


def headline(rows: pd.DataFrame) -> str:
    """The goal in one sentence per FedBuff arm, whatever the verdict."""
    return "\n".join(f"{r['claim']}: {r['verdict']} ({r['note']})" for _, r in rows.iterrows())



def wall_ratios(wall_curves: pd.DataFrame, target: float, ref: str = SYNC) -> pd.DataFrame:
    """On the wall clock (`virtual_time.wall_curve`, sync with its stragglers' emulated seconds):
    per (arm, seed), wall seconds to the target over sync's (inf: never reached), both runs'
    seconds, and the final accuracy's difference from sync's. Descriptive: one box's ranks."""
    rows = []
    for s, g in wall_curves.groupby("seed"):
        sync = g[g["arm"] == ref]
        t_sync = virtual_time.time_to(sync, target, clock="wall_s")
        for arm, c in g[g["arm"] != ref].groupby("arm", sort=False):
            t = virtual_time.time_to(c, target, clock="wall_s")
            rows.append({"seed": s, "arm": arm, "wall_ratio": t / t_sync,
                         "wall_s": float(c["wall_s"].iloc[-1]), "sync_wall_s": float(sync["wall_s"].iloc[-1]),
                         "acc_diff": float(c["accuracy"].iloc[-1] - sync["accuracy"].iloc[-1])})
    return pd.DataFrame(rows)
