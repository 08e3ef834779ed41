"""The communication claims of the study, each judged against a declared margin
(`verdict.TOLERANCES`), and each row saying its `basis`: `measured` (01's `bench comm` replicates,
06's rounds) or `projected (form, network)` (`scaling.project`: the fitted form with an
interconnect's published α, β). A projected row is a point with no interval and never stands in
for a measured one.

From 01 (one client per rank, R ranks on one host — shared memory, not a network):
- "p2p linear in clients" (the star's rank 0 receives every client's update): at the largest
  payload, the rise over the rank range is positive and the quadratic term's CI lies within ±5 %
  of that rise (the fit's distance from a line at mid-range); flat, or a quadratic term entirely
  beyond ±5 %, does not hold. The note gives the Hockney fit over every payload and its
  lack-of-fit test (`scaling`).
- "proportional to model size": the log-log slope of comm s on payload bytes over every payload
  at the largest R has its CI inside [0.8, 1.25] (holds) or entirely outside (does not hold).
  The note gives the fitted latency term's share at the smallest payload: what bends the slope.
- The same two statements projected to the study's setting (`project_claims`).

"Collective comm independent of the number of clients" is a property of the design, not a claim
to test: each rank folds its clients into one sum and the round allreduces that one buffer, so
the bytes a rank sends do not depend on how many (virtual) clients it holds (a test checks it).
With one client per rank, the ring allreduce's volume 2(R−1)/R·n grows toward 2n, bounded.

06's "comm + sync dominate the round" rows: `sync_claims`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import scaling, stats
from .verdict import FAILS, HOLDS, MEASURED, OPEN, TOLERANCES, produced, row

HOST = "ranks on one host share memory, not a network"
STUDY_PAYLOADS = ["ALBERT-base", "BERT-base", "DeBERTa-v3-base"]  # the study's models
STUDY_CLIENTS = [2, 8, 16, 32, 64, 96]  # one client per GPU rank, as the study ran them


def _scale(iv: stats.Interval, k: float) -> stats.Interval:
    return stats.Interval(iv.mean * k, iv.half * abs(k), iv.n)


def _inside(iv: stats.Interval, key: str) -> bool:
    t = TOLERANCES[key]
    return t.lo <= iv.lo and iv.hi <= t.hi


def _outside(iv: stats.Interval, key: str) -> bool:
    t = TOLERANCES[key]
    return iv.hi < t.lo or iv.lo > t.hi


def _ci(iv: stats.Interval, unit: str = "") -> str:
    ci = f"[{iv.lo:.3g}, {iv.hi:.3g}]" if iv.resolved else "(no CI)"
    return f"{iv.mean:.3g}{unit} {ci}"


def _point(value: float) -> stats.Interval:
    """A projected value: one point, no interval."""
    return stats.Interval(float(value), float("nan"), 1)


def _bench_budget(g: pd.DataFrame) -> str:
    reps = g.groupby(["algorithm", "ranks", "payload"]).size()
    cores = int(g["cores"].iloc[0]) if "cores" in g else None
    over = (
        f"; {max(g['ranks'])} ranks on {cores} cores: oversubscribed"
        if cores and max(g["ranks"]) > cores
        else ""
    )
    return (
        f"{'/'.join(str(r) for r in sorted(set(g['ranks'])))} ranks, one client and one thread each "
        f"({HOST}{over}); {reps.min()}-{reps.max()} replicates per cell"
    )


def _bench_produced(g: pd.DataFrame) -> dict:
    rows = g.assign(
        model=g["payload"],
        data="flat float32 buffer",
        trainable="the payload's parameters",
        clients=g["ranks"],
        rounds=g.groupby(["algorithm", "ranks", "payload"])["rep"].transform("size"),
    )
    return produced(rows, seeds=1, strata=1)


def linear(
    claim: str, x: np.ndarray, y: np.ndarray, bud: str, prov: dict, basis: str = MEASURED, extra: str = ""
) -> dict:
    """y linear in x: the rules of the module docstring (replicates as points)."""
    b, c = stats.polyfit(x, y, 1).coef[1], stats.polyfit(x, y, 2).coef[2]
    tol = TOLERANCES["curvature"].text + "; rise > 0"
    measure = "quadratic term: distance from a line at mid-range, fraction of the rise (OLS, comm s)"

    def out(iv: stats.Interval | None, verdict: str, note: str, what: str = measure) -> dict:
        return row(claim, what, iv, tol, bud, verdict, note + extra, prov, basis=basis)

    if not c.resolved:
        return out(None, OPEN, "needs ≥ 2 replicates at ≥ 3 client counts")
    span, mean = float(np.ptp(x)), float(np.mean(y))
    rise = _scale(b, span / mean)
    note = f"slope {_ci(b, ' s/client')}"
    if _inside(rise, "flat"):
        return out(
            rise,
            FAILS,
            "flat: the rise stays within ±20 % of the mean; " + note,
            "rise over the client range, fraction of mean comm s",
        )
    if b.mean <= 0:
        return out(
            rise,
            FAILS if b.hi < 0 else OPEN,
            "comm s does not grow with clients; " + note,
            "rise over the client range, fraction of mean comm s",
        )
    curve = _scale(c, span**2 / 4 / (b.mean * span))
    if b.lo > 0 and _inside(curve, "curvature"):
        return out(curve, HOLDS, "a line: " + note)
    if b.lo > 0 and _outside(curve, "curvature"):
        return out(curve, FAILS, "a curve, not a line: " + note)
    return out(curve, OPEN, "the quadratic term's CI straddles ±5 %: " + note)


def _projected_curve(x: np.ndarray, y: np.ndarray) -> float:
    """The quadratic term's distance from the chord at mid-range, fraction of the rise (no noise)."""
    c = np.polyfit(x, y, 2)[0]
    b = np.polyfit(x, y, 1)[0]
    span = float(np.ptp(x))
    return float(c * span**2 / 4 / (b * span))


def proportional(
    claim: str, nbytes: np.ndarray, t: np.ndarray, bud: str, prov: dict, basis: str = MEASURED, note: str = ""
) -> dict:
    """t ∝ bytes: the log-log slope's CI against [0.8, 1.25] (a projection: its point)."""
    tol = TOLERANCES["size"].text
    measure = "log-log slope of comm s on payload bytes (OLS)"
    ok = (t > 0) & (nbytes > 0)
    s = stats.slope(np.log(nbytes[ok]), np.log(t[ok])).slope
    if basis != MEASURED:
        s = _point(s.mean)
        verdict = HOLDS if TOLERANCES["size"].lo <= s.mean <= TOLERANCES["size"].hi else FAILS
        return row(claim, measure, s, tol, bud, verdict, note, prov, basis=basis)
    if not s.resolved:
        return row(claim, measure, s, tol, bud, OPEN, f"{s.n} points: no slope interval", prov, basis=basis)
    verdict = HOLDS if _inside(s, "size") else FAILS if _outside(s, "size") else OPEN
    return row(claim, measure, s, tol, bud, verdict, note, prov, basis=basis)


def _fit_note(df: pd.DataFrame, alg: str) -> str:
    f = scaling.fit(df, alg)
    return (
        f"; Hockney {f.form} fit over {f.cells} cells: α {f.alpha * 1e6:.3g} ± {f.alpha_half * 1e6:.2g} µs, "
        f"1/β {1 / f.beta / 1e9:.3g} GB/s, weighted R² {f.r2:.3f}, lack of fit F({f.lof.df_lof}, "
        f"{f.lof.df_pe}) = {f.lof.f:.3g}, p = {f.lof.p:.2g}"
    )


def comm_claims(
    df: pd.DataFrame,
    net: scaling.Network | None = None,
    study: dict[str, float] | None = None,
    clients: list[int] | None = None,
) -> list[dict]:
    """01's `bench comm` rows: the measured rows, then the projected ones (`project_claims`)."""
    out = []
    bud = _bench_budget(df)
    big = df.loc[df["payload_bytes"].idxmax(), "payload"]
    p2p = df[(df["algorithm"] == "p2p") & (df["payload"] == big)]
    if len(p2p):
        out.append(
            linear(
                f"p2p star comm time linear in clients ({big}, one client per rank)",
                p2p["ranks"].to_numpy(float),
                p2p["comm_s"].to_numpy(float),
                bud,
                _bench_produced(p2p),
                extra=_fit_note(df, "p2p"),
            )
        )
    top = df[df["ranks"] == df["ranks"].max()]
    for alg, g in top.groupby("algorithm"):
        f = scaling.fit(df, alg)
        small = g.loc[g["payload_bytes"].idxmin()]
        a = scaling.form(alg).latency(small["ranks"]) * f.alpha
        share = a / max(float(g[g["payload"] == small["payload"]]["comm_s"].mean()), 1e-12)
        note = (
            f"{g['payload'].nunique()} payloads, {g['payload_bytes'].min() / 1e6:.3g}-"
            f"{g['payload_bytes'].max() / 1e6:.3g} MB; the fitted latency term is {share:.0%} of the "
            f"smallest payload's time (n½ = α/β = {f.alpha / f.beta / 1e6:.3g} MB)" + _fit_note(df, alg)
        )
        out.append(
            proportional(
                f"comm time proportional to model size ({alg}, {g['ranks'].iloc[0]} clients "
                f"on {g['ranks'].iloc[0]} ranks)",
                g["payload_bytes"].to_numpy(float),
                g["comm_s"].to_numpy(float),
                bud,
                _bench_produced(g),
                note=note,
            )
        )
    return out + project_claims(df, net, study, clients)


def project_claims(
    df: pd.DataFrame,
    net: scaling.Network | None = None,
    study: dict[str, float] | None = None,
    clients: list[int] | None = None,
) -> list[dict]:
    """The same statements at the study's setting (`study`: payload name → bytes, default the
    study's three models; `clients`, one per rank), from the primary forms and `net`'s α, β.
    Each carries the lack-of-fit p of its form on the measured rows: a rejected form makes the
    projection's premise false, whatever it says."""
    from ..bench import payloads

    net = net or scaling.networks()["slingshot-11"]
    study = study or {n: 4.0 * p for n, p in payloads.sizes(STUDY_PAYLOADS).items()}
    clients = clients or STUDY_CLIENTS
    proj = scaling.projection(study, clients, net)
    out = []
    for alg in ("p2p", "collective"):
        if alg not in set(df["algorithm"]):
            continue
        f = scaling.fit(df, alg)
        basis = f"projected ({f.form}, {net.label()})"
        premise = (
            f"a projection, no CI: the {f.form} form (lack of fit on the measured rows p = {f.lof.p:.2g}) "
            f"with {net.name}'s published figures; one NIC per message, no contention or topology"
        )
        g = proj[proj["algorithm"] == alg]
        bud = f"{min(clients)}-{max(clients)} clients, one per rank (GPU); {net.source}"
        prov = {
            "model": "/".join(study),
            "data": "",
            "trainable": "whole model",
            "cached_features": "",
            "clients": "/".join(map(str, clients)),
            "rounds": "",
            "seeds_x_strata": "projection",
            "eval_examples": "",
            "delta": "",
            "git_commit": "",
        }
        if alg == "p2p":
            big = max(study, key=study.__getitem__)
            line = g[g["payload"] == big]
            curve = _projected_curve(line["ranks"].to_numpy(float), line["comm_s"].to_numpy(float))
            ok = abs(curve) <= TOLERANCES["curvature"].hi
            at = line[line["ranks"] == max(clients)]["comm_s"].iloc[0]
            out.append(
                row(
                    f"p2p star comm time linear in clients up to {max(clients)} ({big}, projected)",
                    "quadratic term: distance from a line at mid-range, fraction of the rise",
                    _point(curve),
                    TOLERANCES["curvature"].text,
                    bud,
                    HOLDS if ok else FAILS,
                    f"{at:.3g} s a round at {max(clients)} clients; " + premise,
                    prov,
                    basis=basis,
                )
            )
        top = g[g["ranks"] == max(clients)]
        out.append(
            proportional(
                f"comm time proportional to model size ({alg}, {max(clients)} clients, projected)",
                top["payload_bytes"].to_numpy(float),
                top["comm_s"].to_numpy(float),
                bud,
                prov,
                basis=basis,
                note=premise,
            )
        )
    return out
