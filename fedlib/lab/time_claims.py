""""An arm reaches the target accuracy in less virtual time than sync": the time rule.

Per seed, the arm's virtual time to the target over sync's (`virtual_time.paired_times`: every
seed over the same denominator, sync's time to the target). Time ratios are multiplicative, so
the effect is their geometric mean and the CI the paired t-interval of the log ratios,
exponentiated back (`stats.log_ratio`); a raw-scale interval of 0.25, 0.65, 0.19 reaches below 0.
A superiority claim with no margin (`verdict.TOLERANCES["time"]`):
- holds: the whole CI below 1, and every seed reached the target;
- does not hold: the whole CI at or above 1, and sync reached the target in every seed;
- not resolved otherwise. A seed where the arm never reached the target enters at a lower bound
  (its whole run over sync's time to the target: the same denominator as the seeds that reached
  it), so it can make the row fail but never hold; one where sync never did enters at an upper
  bound (the arm's time over sync's whole run), so it can make the row hold but never fail; one
  where neither did carries no ratio and leaves the row unresolved. (Bounding rather than a
  survival estimate: with 3-5 seeds a Kaplan–Meier curve has one or two steps, and the bound
  keeps the paired log-scale interval every other seed is in.)
- "not resolved: no learning left to speed up" whatever the interval, when sync gained less than
  `GAIN` (1 accuracy point) from half its budget to its end, mean over seeds
  (`virtual_time.learning_left`): a model that has plateaued reaches a target near its plateau
  when its evaluation noise says so, and the time rule would time that noise. The note keeps what
  the time rule alone says.
"""

from __future__ import annotations

import math

import pandas as pd

from . import stats
from .verdict import FAILS, HOLDS, NO_LEARNING, OPEN, TOLERANCES, budget, produced, row

GAIN = 0.01  # accuracy sync must still gain after half its budget for "faster" to be testable
MEASURE = "virtual time to target / sync's, per seed (paired): geometric mean, t-interval of log ratios"


def rule(times: pd.DataFrame, bound: float | None = None) -> tuple[stats.Ratio | None, str, str]:
    """The time rule alone on one arm's `paired_times` rows: (interval, verdict, why). `bound`:
    the ratio the CI must stay below (default `TOLERANCES["time"]`, 1; FedBuff's goal asks 0.5)."""
    tol = TOLERANCES["time"].hi if bound is None else bound
    kinds = times["kind"]
    lower, upper = int((kinds == "arm never reached").sum()), int((kinds == "ref never reached").sum())
    neither = int((kinds == "neither").sum())
    usable = times[kinds != "neither"]
    iv = stats.log_ratio(usable["ratio"]) if len(usable) else None
    bounds = "".join([f"; {lower} of {len(times)} seeds never reached it (lower bound: its run / sync's "
                      "time to the target)" * bool(lower),
                      f"; sync never reached it in {upper} seeds (upper bound: / sync's run)" * bool(upper)])
    if neither:
        return iv, OPEN, f"neither arm reached the target in {neither} seeds: no ratio" + bounds
    if iv is None or not iv.resolved:
        return iv, OPEN, "one seed: no interval" + bounds
    if iv.hi < tol and not lower:
        return iv, HOLDS, f"faster: whole CI below {tol:g}" + bounds
    if iv.lo >= tol and not upper:
        return iv, FAILS, f"not faster: whole CI at or above {tol:g}" + bounds
    if iv.hi < tol:
        return iv, OPEN, "CI below 1 but a seed's ratio is only a lower bound" + bounds
    if iv.lo >= tol:
        return iv, OPEN, "CI above 1 but a seed's ratio is only an upper bound" + bounds
    return iv, OPEN, f"CI straddles {tol:g}" + bounds


def faster(claim: str, times: pd.DataFrame, left: float, runs: pd.DataFrame, target: str) -> dict:
    """One arm's time row: `times` its `paired_times` rows, `left` sync's `learning_left`, `runs`
    both arms' runs (what produced the row), `target` how the target was chosen (for the note)."""
    tol = TOLERANCES["time"]
    if not len(times):
        return row(claim, MEASURE, None, tol.text, "", OPEN, "not run in this profile")
    iv, verdict, why = rule(times)
    prov, bud = produced(runs), budget(runs)
    ci = f"CI [{iv.lo:.3g}, {iv.hi:.3g}]" if iv is not None and iv.resolved else "no CI"
    if math.isfinite(left) and left < GAIN:
        note = (f"sync gains {left:.3g} accuracy from half its budget to its end (< {GAIN:g}); "
                f"by the time rule alone: {verdict} ({why}, {ci}); target: {target}")
        return row(claim, MEASURE, iv, tol.text, bud, NO_LEARNING, note, prov)
    gain = f"sync gains {left:.3g} after half its budget" if math.isfinite(left) else "sync's gain not known"
    return row(claim, MEASURE, iv, tol.text, bud, verdict, f"{why}; {gain}; target: {target}", prov)
