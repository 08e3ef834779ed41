"""06's "comm + sync dominate the round" (the study's bottleneck claim, measured as stated): the
CI of (pack + comm + wait) / round above 0.5 holds, below fails. The server's aggregation and
optimizer step are computation: their share (aggregate / round) is its own row. Both rows name
the workload (model, local steps × batch × tokens, clients on ranks) and its compute-to-
communication ratio: a share holds for that workload, not for every workload.
"""

from __future__ import annotations

import math

import pandas as pd

from . import stats
from .verdict import FAILS, HOLDS, OPEN, TOLERANCES, budget, produced, row, workload

SYNC = ["pack_s", "comm_s", "wait_s"]  # synchronization: the server step (aggregate_s) is computation
SERVER = ["aggregate_s"]


def sync_claims(df: pd.DataFrame) -> list[dict]:
    """06's baselines at the largest client count: the round's synchronization share, and the
    server step's share (computation) in a row of its own."""
    out = []
    top = df[df["clients"] == df["clients"].max()]
    tol = TOLERANCES["sync"].text
    for strategy in ("collective (baseline)", "p2p star"):
        g = top[top["strategy"] == strategy]
        for part, cols, what in (
            ("sync", SYNC, "comm + sync (pack + comm + wait) dominate the round"),
            ("server", SERVER, "the server's aggregation + optimizer step (computation) dominate the round"),
        ):
            measure = f"({' + '.join(c.removesuffix('_s') for c in cols)}) / round"
            if not len(g):
                out.append(
                    row(f"{what} ({strategy})", measure, None, tol, "", OPEN, "not run in this profile")
                )
                continue
            model, ranks = (
                "/".join(sorted(set(g["model"]))),
                "/".join(str(r) for r in sorted(set(g["ranks"]))),
            )
            load = f"{model}, {workload(g)}, {g['clients'].iloc[0]} clients on {ranks} ranks"
            ratio = float(g["compute_s"].mean() / g["comm_s"].mean())
            claim = f"{what} ({strategy}; {load})"
            iv = stats.interval(g[cols].sum(axis=1) / g["round_s"])
            bud = f"{budget(g)}; workload {load}, compute/comm {ratio:.3g}"
            verdict = OPEN if not iv.resolved else HOLDS if iv.lo > 0.5 else FAILS if iv.hi < 0.5 else OPEN
            note = f"compute/comm = {ratio:.3g} (rank 0's compute s / comm s); " + (
                "the server step is not counted: its own row"
                if part == "sync"
                else "computation on the round's mean update, not communication"
            )
            if not iv.resolved:
                note = "one seed: no interval; " + note
            elif verdict == OPEN:
                n = stats.seeds_needed(iv.mean - 0.5, iv.half * math.sqrt(iv.n) / stats.tcrit(iv.n))
                note = (
                    f"CI straddles 0.5; ~{n} seeds would resolve it (80 % power); " if n else "share at 0.5; "
                ) + note
            out.append(row(claim, measure, iv, tol, bud, verdict, note, produced(g)))
    return out
