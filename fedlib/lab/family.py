"""The accuracy claims as one family: Holm-adjusted verdicts beside the per-row ones, and which
rows share their reference runs.

Each accuracy row is a non-inferiority test at one-sided 0.025 (its 95 % CI above −margin: holds)
and its mirror (the CI below −margin: does not hold). Over k such rows, about 0.025·k "holds"
are wrong by chance where the truth sits at the margin; Holm's step-down procedure (Holm 1979)
keeps the family-wise error at 0.025 per direction under any dependence between the rows — which
matters here, since rows that share reference runs are positively correlated. Holm runs once per
direction over the measured accuracy rows that have a p-value (`p_holds`, `p_fails`); the `holm`
verdict is the per-row one where Holm still rejects, else "not resolved at this budget"; a row
left unresolved for another reason (one seed, a reference that does not learn) stays so.
Projected rows and rows of other families (time, communication) get no Holm verdict.

`shares_reference`: rows whose reference runs are the same runs (or bit-identical reruns: same
model, data, trainable part, clients, rounds, seeds, and the same accuracy and loss to the last
digit per seed) are labelled `ref N: k rows`, so a reader counts them as one piece of evidence
about the reference, not k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .verdict import FAILS, HOLDS, MEASURED, OPEN, TOLERANCES

ALPHA = 0.025
REF_KEY = "_reference"  # a row dict's fingerprint of its reference runs (not a column)
FINGERPRINT = ("model", "data", "trainable", "clients", "rounds", "seed", "accuracy", "eval_loss")


def holm_adjusted(p: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values: sorted ascending, p_adj(i) = max over j ≤ i of min(1, (m − j + 1)·p(j)),
    with m the number of finite p-values; a NaN (no test) stays NaN and does not count in m."""
    v = np.asarray(p, dtype=float)
    ok = np.flatnonzero(np.isfinite(v))
    out = np.full(len(v), np.nan)
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(v[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(v[i])))
        out[i] = running
    return out.tolist()


def fingerprint(ref: pd.DataFrame) -> tuple:
    """What identifies a reference's runs (the columns of `FINGERPRINT` it has), order-free."""
    cols = [c for c in FINGERPRINT if c in ref]
    return tuple(sorted(tuple(repr(v) for v in r) for r in ref[cols].itertuples(index=False)))


def in_family(r: dict) -> bool:
    return r.get("tolerance") == TOLERANCES["accuracy"].text and r.get("basis", MEASURED) == MEASURED


def adjust(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """`rows` with `holm`, `p_holm` and `shares_reference` filled in (the rules above)."""
    fam = [i for i, r in enumerate(rows) if in_family(r)]
    holds = holm_adjusted([rows[i].get("p_holds", math.nan) for i in fam])
    fails = holm_adjusted([rows[i].get("p_fails", math.nan) for i in fam])
    out = [{**r, "holm": "", "p_holm": math.nan, "shares_reference": ""} for r in rows]
    for i, ph, pf in zip(fam, holds, fails, strict=True):
        r = out[i]
        if math.isfinite(ph):
            above = r["effect"] >= TOLERANCES["accuracy"].lo  # the direction its effect points to
            r["p_holm"] = ph if above else pf
        if r["verdict"] == HOLDS:
            r["holm"] = HOLDS if ph <= alpha else OPEN
        elif r["verdict"] == FAILS:
            r["holm"] = FAILS if pf <= alpha else OPEN
        else:
            r["holm"] = r["verdict"]
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.get(REF_KEY):
            groups.setdefault(r[REF_KEY], []).append(i)
    shared = [g for g in groups.values() if len(g) > 1]
    for label, g in enumerate(sorted(shared), start=1):
        for i in g:
            out[i]["shares_reference"] = f"ref {label}: {len(g)} rows"
    for r in out:
        r.pop(REF_KEY, None)
    return out
