"""How many seeds a comparison needs, chosen before it runs, and the smallest effect a given
number of seeds can resolve (the minimum detectable effect, MDE).

A row's verdict is decided by its 95 % interval against a margin (`verdict.TOLERANCES`): it
resolves when the whole interval lies on one side. With n seeds per stratum and K strata the
interval's half-width is t(1 − α/2, K(n − 1)) · σ / √(K·n), so a true effect at distance d from
the margin is resolved with probability `power` when

    (t(1 − α/2, K(n − 1)) + t(power, K(n − 1))) · σ / √(K·n) ≤ d.

σ is the sd of one seed's paired difference. It comes from a pilot with few degrees of freedom
(2 for 3 seeds: its estimate can be half the truth), so the plan uses its one-sided upper
confidence bound σ·√(ν / χ²(1 − c, ν)) at confidence c (`sd_upper`), not the estimate itself.
The pilot's observed *effect* plays no part: a seed count computed from the effect a run happened
to observe ("~41 seeds would resolve it") is post hoc and is not what a reader can check.

The CIs these plans size cover seed-to-seed variation only (initial weights, partition, client
sampling): the evaluation set is fixed, so test-set sampling error is not in them.
"""

from __future__ import annotations

import math

from scipy import stats as _st

LEVEL = 0.95
POWER = 0.8
SD_CONFIDENCE = 0.8  # the pilot sd's one-sided upper confidence bound used for planning


def sd_upper(sd: float, dof: float, confidence: float = SD_CONFIDENCE) -> float:
    """One-sided upper confidence bound of a standard deviation estimated on `dof` degrees of
    freedom (χ² interval of the variance): sd · √(dof / χ²_{1−confidence}(dof)). confidence 0
    returns `sd` unchanged (plan on the point estimate)."""
    if not (math.isfinite(sd) and math.isfinite(dof) and dof > 0):
        raise ValueError(f"sd_upper: need a finite sd and dof > 0, got sd={sd!r}, dof={dof!r}")
    if not 0 <= confidence < 1:
        raise ValueError(f"sd_upper: confidence must be in [0, 1), got {confidence!r}")
    if confidence == 0:
        return sd
    return sd * math.sqrt(dof / _st.chi2.ppf(1 - confidence, dof))


def _resolvable(n: int, sd: float, strata: int, power: float, level: float) -> float:
    """The distance from the margin resolved with `power` at n seeds per stratum (σ given)."""
    dof = strata * (n - 1)
    return float(_st.t.ppf(0.5 + level / 2, dof) + _st.t.ppf(power, dof)) * sd / math.sqrt(strata * n)


def mde(seeds: int, sd: float, dof: float, strata: int = 1, power: float = POWER, level: float = LEVEL,
        confidence: float = SD_CONFIDENCE) -> float:
    """The minimum detectable effect: how far from the margin a true effect must lie for `seeds`
    seeds per stratum (K = `strata`) to resolve the row with probability `power`, planning on the
    upper bound of the pilot's sd `sd` (estimated on `dof` degrees of freedom)."""
    if seeds < 2:
        raise ValueError(f"mde: one seed has no interval; got seeds={seeds}")
    return _resolvable(seeds, sd_upper(sd, dof, confidence), strata, power, level)


def seeds_for(distance: float, sd: float, dof: float, strata: int = 1, power: float = POWER,
              level: float = LEVEL, confidence: float = SD_CONFIDENCE, most: int = 1000) -> int | None:
    """Seeds per stratum needed to resolve, with probability `power`, a true effect `distance`
    from the margin (its sign does not matter), from a pilot's sd `sd` on `dof` degrees of freedom:
    the smallest n ≥ 2 with `mde(n, ...)` ≤ |distance|. None when no n up to `most` does."""
    if not math.isfinite(distance) or distance == 0:
        return None
    bound = sd_upper(sd, dof, confidence)
    for n in range(2, most + 1):
        if _resolvable(n, bound, strata, power, level) <= abs(distance):
            return n
    return None


def mde_text(seeds: int, sd: float, dof: float, strata: int = 1) -> str:
    """What a row's note says about its design: the MDE at the seeds it ran, and the sd it used."""
    if seeds < 2 or not (math.isfinite(sd) and math.isfinite(dof) and dof > 0):
        return "no MDE: fewer than 2 seeds or no sd"
    bound = sd_upper(sd, dof)
    where = f"{seeds} seeds" + (f" × {strata} strata" if strata > 1 else "")
    return (f"MDE at {where}: {mde(seeds, sd, dof, strata):.3g} "
            f"from the margin ({POWER:.0%} power; sd {sd:.3g} on {dof:g} dof, "
            f"{SD_CONFIDENCE:.0%} upper bound {bound:.3g})")
