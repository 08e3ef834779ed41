"""The pieces every claim row shares: the verdicts, the one table of tolerances (each with its
reason), the row's basis (measured, or projected by a named model with named parameters), and
what produced a row (profile, model, data, what trained in words (`trainable.text`), clients,
rounds, seeds × strata, evaluation examples, δ, git commit) — so a reader who sees only
`claims.csv` cannot mistake a linear probe for whole-model fine-tuning, or a projection for a
measurement.

Error rate: the `verdict` column judges each claim on its own 95 % interval (a one-sided bound at
2.5 % for the non-inferiority claims, two-sided 5 % for the equivalence claims); the `holm`
column beside it controls the family-wise error of the accuracy claims (`family`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from . import stats, trainable

HOLDS, FAILS, OPEN = "holds", "does not hold", "not resolved at this budget"
# A "faster" claim whose reference had nothing left to learn: any time to its accuracy is noise.
NO_LEARNING = "not resolved: no learning left to speed up"
MEASURED = "measured"


@dataclass(frozen=True)
class Tolerance:
    """A margin with the reason it has that size (README's tolerance table is made from these)."""

    lo: float
    hi: float
    text: str  # how it reads in the claims table
    reason: str


TOLERANCES: dict[str, Tolerance] = {
    "accuracy": Tolerance(
        -0.03, float("inf"), "Δ accuracy ≥ −0.03",
        "non-inferiority margin: 3 accuracy points is a drop a reader of the study's Figure 1(b) "
        "would call visible; each row's note states the seed-to-seed sd of the paired difference "
        "it measured, so the margin can be checked against the spread (a margin far below the sd "
        "leaves a claim unresolved at any affordable number of seeds)"),
    "flat": Tolerance(
        -0.2, 0.2, "change over the client range within ±20 % of mean comm s",
        "equivalence margin of 'independent of clients': timings on a shared host jitter by "
        "~10 % between rounds; a change under a fifth of the comm time across the whole "
        "measured range is below what the cost model (`scaling`) is used to decide"),
    "curvature": Tolerance(
        -0.05, 0.05, "quadratic term within ±5 % of the rise",
        "a line's equivalence margin: the quadratic fit may leave the straight chord by at most "
        "5 % of the rise over the range at mid-range (fitted to 2, 6, 12 clients, √x leaves it "
        "by 11 % and x² by 17 %: both are curves by this margin)"),
    "size": Tolerance(
        0.8, 1.25, "log-log slope in [0.8, 1.25]",
        "proportional means time ∝ bytes^1; 0.8-1.25 is the usual symmetric (on a log scale) "
        "equivalence range of a ratio: a 2× larger model costs between 1.74× and 2.38×"),
    "time": Tolerance(
        0.0, 1.0, "time ratio < 1",
        "a superiority claim, no margin: an asynchronous arm is a remedy for the synchronization "
        "bottleneck only if it reaches a target accuracy fixed in advance, below sync's plateau, "
        "sooner, in the virtual time of the stated speed law (the notebook's `speed`); any ratio "
        "whose whole CI (log scale) is below 1 is a saving"),
    "goal": Tolerance(
        0.0, 0.5, "time ratio ≤ 0.5 (log-scale CI) and Δ accuracy ≥ −0.03",
        "FedBuff's goal: its authors report it 3.3× more efficient than synchronous FL (Nguyen et "
        "al. 2022); fedlib asks for less, half sync's virtual time to the target, with accuracy at "
        "sync's time non-inferior (the accuracy margin above); said either way"),
    "sync": Tolerance(
        0.5, float("inf"), "share > 0.5",
        "'dominate' = more than half of the round; stated for the workload in the budget column "
        "(local steps, batch, tokens), not for every workload"),
}


def tolerance_table() -> pd.DataFrame:
    """The tolerances with their reasons: what README and 99_summary print."""
    return pd.DataFrame([{"tolerance": k, "margin": t.text, "reason": t.reason}
                         for k, t in TOLERANCES.items()])


def projected(model: str, parameters: Mapping[str, object]) -> str:
    """The `basis` of a row computed by a fitted model rather than measured, e.g.
    `projected(Hockney α–β fit of 01, alpha_s=2e-06, beta_Bps=2.5e+10)`. Such a row is its own
    claim: `claims.table` refuses one that repeats a measured row's claim text."""
    if not model.strip() or not parameters:
        raise ValueError("projected: name the model and at least one parameter")
    values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in parameters.items())
    return f"projected ({model}, {values})"


def is_basis(text: str) -> bool:
    return text == MEASURED or (text.startswith("projected (") and text.endswith(")"))


class _Summary(Protocol):
    """What a row reads of an interval: `stats.Interval` and `stats.Ratio` both have it."""

    @property
    def mean(self) -> float: ...
    @property
    def lo(self) -> float: ...
    @property
    def hi(self) -> float: ...
    @property
    def n(self) -> int: ...


def row(claim: str, measure: str, iv: _Summary | None, tol: str, budget: str, verdict: str,
        note: str = "", produced: dict | None = None, basis: str = MEASURED) -> dict:
    """One claims-table row (`basis`: `MEASURED` or `projected(...)`)."""
    if not is_basis(basis):
        raise ValueError(f"claims row {claim!r}: basis {basis!r} is neither 'measured' nor 'projected (...)'")
    iv = iv or stats.Interval(float("nan"), float("nan"), 0)
    return {"claim": claim, "effect": iv.mean, "ci_low": iv.lo, "ci_high": iv.hi, "n": iv.n,
            "measure": measure, "tolerance": tol, "budget": budget, "verdict": verdict, "note": note,
            "basis": basis, **(produced or {})}


PRODUCED = ["model", "data", "trainable", "cached_features", "clients", "rounds", "seeds_x_strata",
            "eval_examples", "delta", "git_commit"]


def _vals(rows: pd.DataFrame, col: str) -> str:
    if col not in rows:
        return "?"
    v = sorted({x for x in rows[col].dropna().tolist()}, key=lambda x: (isinstance(x, str), x))
    return "/".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "?"


def produced(rows: pd.DataFrame, seeds: int | None = None, strata: int = 1) -> dict:
    """What produced a claim's rows, one text per column of `PRODUCED`."""
    seeds = seeds if seeds is not None else (rows["seed"].nunique() if "seed" in rows else 1)
    evals = "?"
    if "eval_examples" in rows and rows["eval_examples"].notna().any():
        split = _vals(rows, "eval_split_size")
        evals = f"{_vals(rows, 'eval_examples')} of {split}" if split != "?" else _vals(rows, "eval_examples")
    commit = "?"
    if "prov_git_commit" in rows and rows["prov_git_commit"].notna().any():
        commit = "/".join(sorted({str(c)[:10] for c in rows["prov_git_commit"].dropna()}))
        dirty = "prov_git_dirty" in rows and rows["prov_git_dirty"].astype(str).str.lower().eq("true").any()
        commit += " (dirty tree)" if dirty else ""
    return {"model": _vals(rows, "model"), "data": _vals(rows, "data"), "trainable": trainable.text(rows),
            "cached_features": _vals(rows, "cached_features"), "clients": _vals(rows, "clients"),
            "rounds": _vals(rows, "rounds"), "seeds_x_strata": f"{seeds} × {strata}",
            "eval_examples": evals, "delta": _vals(rows, "delta") if _has(rows, "delta") else "",
            "git_commit": commit}


def _has(rows: pd.DataFrame, col: str) -> bool:
    return col in rows and bool(rows[col].notna().any())


def budget(rows: pd.DataFrame) -> str:
    """Clients, rounds, trainable part and seeds of the runs behind a claim."""
    seeds = rows["seed"].nunique() if "seed" in rows else 1
    seeds_txt = f"{seeds} seed" + "s" * (seeds != 1)
    return (f"{_vals(rows, 'clients')} clients, {_vals(rows, 'rounds')} rounds, {_vals(rows, 'trainable')}, "
            f"{seeds_txt}")


def workload(rows: pd.DataFrame) -> str:
    """A client's round as run: local steps (or epochs) × batch × tokens."""
    steps = (f"{_vals(rows, 'local_steps')} local steps" if _has(rows, "local_steps")
             else f"{_vals(rows, 'local_epochs')} local epochs")
    return f"{steps} × batch {_vals(rows, 'batch_size')} × {_vals(rows, 'max_length')} tokens"
