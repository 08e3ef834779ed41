"""A latency-bandwidth (Hockney α–β) model of a round's communication, fitted to `bench comm`'s
replicates and projected to a cluster with an interconnect's published latency and bandwidth.

Time of one round's communication with R ranks (one client each) and an n-byte update:

    t(R, n) = a(R)·α + b(R)·n·β          α: seconds per message, β: seconds per byte

where a(R) counts the messages on the critical path and b(R) the payloads that cross the busiest
link, as each algorithm's structure fixes them (Thakur, Rabenseifner & Gropp 2005 for the MPI
collectives):
- collective, ring allreduce (reduce-scatter + allgather, what MPI libraries and NCCL use for
  large messages): a = 2(R−1), b = 2(R−1)/R — at most 2 payloads, whatever R;
- collective, recursive doubling (the small-message choice; the alternative the fit is held
  against): a = b = ⌈log2 R⌉;
- p2p star (fedlib's `Star`): rank 0 receives every other rank's header and update one after
  another through its own link, 2(R−1) messages and R−1 payloads, then broadcasts the new
  weights down a binomial tree, ⌈log2 R⌉ steps of one payload: a = 2(R−1) + ⌈log2 R⌉,
  b = R−1 + ⌈log2 R⌉;
- p2p star with a pipelined broadcast (the alternative): a = 2(R−1) + ⌈log2 R⌉, b = R.
The first form of each algorithm (`PRIMARY`) carries the projection.

Fit: weighted least squares with weights 1/ȳ² per cell (one cell = one (R, payload); timings
spread in proportion to their size, and payloads span 4 decades: unweighted, the largest would
decide α). Goodness of fit: weighted R², each cell's relative residual, and the lack-of-fit F
test, which sets the spread of the cell means around the model against the replicates' own
spread (pure error): a small p says the form is wrong for these data, whatever R² says.

`project` is the form with a network's α, β (`networks`, read from params/interconnects.yaml).
It assumes one NIC per message path, no contention, no topology and no multi-rail striping;
intra-node links count as network links. An order-of-magnitude guide, not a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats as _st

from .stats import LEVEL, tcrit

ROOT = Path(__file__).resolve().parents[2]
INTERCONNECTS = ROOT / "params" / "interconnects.yaml"


def _log2(r: float) -> float:
    return float(math.ceil(math.log2(r))) if r > 1 else 0.0


@dataclass(frozen=True)
class Form:
    """t(R, n) = latency(R)·α + volume(R)·n·β."""

    name: str
    latency: Callable[[float], float]  # a(R): messages on the critical path
    volume: Callable[[float], float]  # b(R): payloads through the busiest link
    text: str


FORMS: dict[str, list[Form]] = {
    "collective": [
        Form("ring", lambda r: 2 * (r - 1), lambda r: 2 * (r - 1) / r, "2(R−1)·α + 2(R−1)/R·n·β"),
        Form("recursive doubling", _log2, _log2, "⌈log2 R⌉·(α + n·β)"),
    ],
    "p2p": [
        Form(
            "star + binomial broadcast",
            lambda r: 2 * (r - 1) + _log2(r),
            lambda r: r - 1 + _log2(r),
            "(2(R−1) + ⌈log2 R⌉)·α + (R−1 + ⌈log2 R⌉)·n·β",
        ),
        Form(
            "star + pipelined broadcast",
            lambda r: 2 * (r - 1) + _log2(r),
            lambda r: float(r),
            "(2(R−1) + ⌈log2 R⌉)·α + R·n·β",
        ),
    ],
}
PRIMARY = {alg: forms[0] for alg, forms in FORMS.items()}


def form(algorithm: str, name: str | None = None) -> Form:
    forms = FORMS.get(algorithm)
    if forms is None:
        raise KeyError(f"algorithm {algorithm!r}: no Hockney form (one of {sorted(FORMS)})")
    if name is None:
        return forms[0]
    for f in forms:
        if f.name == name:
            return f
    raise KeyError(f"form {name!r} for {algorithm}: one of {[f.name for f in forms]}")


def design(f: Form, ranks: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """Columns [a(R), b(R)·n]: t = design @ [α, β]."""
    a = np.array([f.latency(r) for r in ranks], dtype=float)
    b = np.array([f.volume(r) for r in ranks], dtype=float) * nbytes
    return np.column_stack([a, b])


@dataclass(frozen=True)
class LackOfFit:
    f: float
    df_lof: int
    df_pe: int
    p: float


def lack_of_fit(
    y: np.ndarray, cells: np.ndarray, fitted: np.ndarray, weights: np.ndarray, params: int
) -> LackOfFit:
    """The lack-of-fit F test: SS_lof = Σ_cells n_c·w_c·(ȳ_c − ŷ_c)² on (cells − params) degrees
    of freedom against pure error SS_pe = Σ w·(y − ȳ_c)² on (N − cells). `fitted` and `weights`
    are per observation (constant within a cell)."""
    frame = pd.DataFrame({"y": y, "cell": cells, "fit": fitted, "w": weights})
    g = frame.groupby("cell")
    mean = g["y"].transform("mean")
    ss_pe = float((frame["w"] * (frame["y"] - mean) ** 2).sum())
    ss_lof = float((frame["w"] * (mean - frame["fit"]) ** 2).sum())
    m, n = g.ngroups, len(frame)
    df_lof, df_pe = m - params, n - m
    if df_lof <= 0 or df_pe <= 0 or ss_pe <= 0:
        return LackOfFit(float("nan"), df_lof, df_pe, float("nan"))
    f = (ss_lof / df_lof) / (ss_pe / df_pe)
    return LackOfFit(f, df_lof, df_pe, float(_st.f.sf(f, df_lof, df_pe)))


@dataclass(frozen=True)
class Fit:
    """α, β with their t-intervals (weighted least squares), weighted R², lack of fit."""

    algorithm: str
    form: str
    alpha: float
    alpha_half: float
    beta: float
    beta_half: float
    r2: float
    lof: LackOfFit
    n: int
    cells: int
    max_rel_resid: float  # the largest |ȳ_c − ŷ_c| / ȳ_c over cells

    def row(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "form": self.form,
            "alpha_s": self.alpha,
            "alpha_ci_half_s": self.alpha_half,
            "beta_s_per_byte": self.beta,
            "beta_ci_half": self.beta_half,
            "bandwidth_gb_s": 1 / self.beta / 1e9 if self.beta > 0 else float("inf"),
            "n_half_bytes": self.alpha / self.beta if self.beta > 0 else float("nan"),
            "r2_weighted": self.r2,
            "lof_f": self.lof.f,
            "lof_df": f"{self.lof.df_lof}, {self.lof.df_pe}",
            "lof_p": self.lof.p,
            "max_rel_resid": self.max_rel_resid,
            "n": self.n,
            "cells": self.cells,
        }


def fit(
    df: pd.DataFrame, algorithm: str, form_name: str | None = None, y: str = "comm_s", level: float = LEVEL
) -> Fit:
    """The form fitted to `algorithm`'s replicate rows (columns ranks, payload_bytes, `y`)."""
    f = form(algorithm, form_name)
    g = df[df["algorithm"] == algorithm]
    ranks, nbytes = g["ranks"].to_numpy(float), g["payload_bytes"].to_numpy(float)
    t = g[y].to_numpy(float)
    cells = np.array([f"{r:g}|{b:g}" for r, b in zip(ranks, nbytes, strict=True)])
    cell_mean = pd.Series(t).groupby(cells).transform("mean").to_numpy()
    w = 1.0 / cell_mean**2
    x = design(f, ranks, nbytes)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], t * sw, rcond=None)
    fitted = x @ coef
    res = t - fitted
    n, p = len(t), 2
    ss_res = float((w * res**2).sum())
    wmean = float((w * t).sum() / w.sum())
    ss_tot = float((w * (t - wmean) ** 2).sum())
    s2 = ss_res / (n - p) if n > p else float("nan")
    cov = s2 * np.linalg.inv(x.T @ (x * w[:, None]))
    half = tcrit(n - p + 1, level) * np.sqrt(np.diag(cov)) if n > p else np.full(2, np.nan)
    rel = np.abs(cell_mean - fitted) / cell_mean
    return Fit(
        algorithm,
        f.name,
        float(coef[0]),
        float(half[0]),
        float(coef[1]),
        float(half[1]),
        1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        lack_of_fit(t, cells, fitted, w, p),
        n,
        len(set(cells)),
        float(rel.max()),
    )


def fits(df: pd.DataFrame, y: str = "comm_s") -> pd.DataFrame:
    """Every form of every algorithm that ran: one row each (the primary form first)."""
    return pd.DataFrame(
        [fit(df, alg, f.name, y).row() for alg in FORMS if alg in set(df["algorithm"]) for f in FORMS[alg]]
    )


def residuals(df: pd.DataFrame, y: str = "comm_s") -> pd.DataFrame:
    """Per (algorithm, ranks, payload) cell of the primary form: mean, fitted, relative residual."""
    out = []
    for alg in [a for a in FORMS if a in set(df["algorithm"])]:
        ft, f = fit(df, alg, None, y), PRIMARY[alg]
        cell = (
            df[df["algorithm"] == alg]
            .groupby(["ranks", "payload", "payload_bytes"], as_index=False)[y]
            .mean()
        )
        pred = design(f, cell["ranks"].to_numpy(float), cell["payload_bytes"].to_numpy(float)) @ [
            ft.alpha,
            ft.beta,
        ]
        out.append(cell.assign(algorithm=alg, fitted=pred, rel_resid=(cell[y] - pred) / cell[y]))
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class Network:
    """An interconnect's per-NIC figures, and where they come from."""

    name: str = "slingshot-11"
    bandwidth: float = 25e9  # bytes / s per NIC, per direction
    latency: float = 2e-6  # seconds per message
    source: str = ""

    @property
    def beta(self) -> float:
        return 1.0 / self.bandwidth

    def label(self) -> str:
        return f"{self.name}: α={self.latency * 1e6:g} µs, {self.bandwidth / 1e9:g} GB/s"


def networks(path: Path = INTERCONNECTS) -> dict[str, Network]:
    """The interconnects of params/interconnects.yaml, each with its quoted sources."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    out = {}
    for name, spec in raw.items():
        for key in ("bandwidth_gb_s", "latency_us", "bandwidth_source", "latency_source"):
            if key not in spec:
                raise KeyError(f"{path}: interconnect {name!r} has no {key}")
        if not (spec["bandwidth_gb_s"] > 0 and spec["latency_us"] >= 0):
            raise ValueError(f"{path}: interconnect {name!r}: bandwidth_gb_s must be > 0, latency_us >= 0")
        out[name] = Network(
            name,
            float(spec["bandwidth_gb_s"]) * 1e9,
            float(spec["latency_us"]) * 1e-6,
            f"bandwidth: {spec['bandwidth_source']}; latency: {spec['latency_source']}",
        )
    return out


def project(
    payload: float, ranks: int, algorithm: str, net: Network = Network(), form_name: str | None = None
) -> float:
    """Seconds of one round's communication on `ranks` ranks (one client each) with `net`'s α, β."""
    if ranks <= 1:
        return 0.0
    f = form(algorithm, form_name)
    return float(f.latency(ranks) * net.latency + f.volume(ranks) * payload * net.beta)


def projection(payloads: dict[str, float], ranks: list[int], net: Network) -> pd.DataFrame:
    """Projected comm s per round for each (payload name → bytes, ranks, algorithm)."""
    return pd.DataFrame(
        [
            {
                "payload": name,
                "payload_bytes": b,
                "ranks": r,
                "clients": r,
                "algorithm": alg,
                "comm_s": project(b, r, alg, net),
                "network": net.name,
                "basis": f"projected ({PRIMARY[alg].name}, {net.label()})",
            }
            for name, b in payloads.items()
            for r in ranks
            for alg in FORMS
        ]
    )
