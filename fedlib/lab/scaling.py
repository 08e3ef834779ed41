"""A cost model of the per-round communication, fitted to measured rounds and projected to
cluster scale.

Bytes on the critical path per round, for payload B (one update), n clients, p ranks:
- collective (ring allreduce of the per-rank sums): 2·(p−1)/p · B, independent of n;
- p2p (rank-0 star): rank 0 receives the n·(p−1)/p remote client updates and sends B to each
  of the p−1 other ranks: (n·(p−1)/p + p − 1) · B.
Measured communicate+wait seconds are fitted as t = a + b · volume per mode (least squares;
a = fixed per-round cost, 1/b = effective bandwidth). `project` replaces the fitted bandwidth
with a network's (default: a Slingshot-11-class 200 Gb/s NIC, 2 µs latency) and adds the
per-message latencies: what 96+ nodes would pay. It assumes a bandwidth-bound, contention-free
network and a star that serialises at rank 0's NIC; it knows nothing of topology, incast
congestion or stragglers, so read it as an order-of-magnitude guide, not a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Network:
    bandwidth: float = 25e9  # bytes / s per NIC (200 Gb/s)
    latency: float = 2e-6  # seconds per message


def volume(mode: str, payload: float, clients: float, ranks: float) -> float:
    """Bytes through the busiest link per round."""
    if ranks <= 1:
        return 0.0
    if mode == "collective":
        return 2 * (ranks - 1) / ranks * payload
    return (clients * (ranks - 1) / ranks + ranks - 1) * payload


def messages(mode: str, clients: float, ranks: float) -> float:
    """Sequential message latencies per round."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) if mode == "collective" else clients * (ranks - 1) / ranks + np.log2(ranks)


def _volumes(df: pd.DataFrame) -> np.ndarray:
    return np.array([volume(m, b, n, p) for m, b, n, p in
                     zip(df["aggregation"], df["payload_bytes"], df["clients"], df["ranks"], strict=True)])


def fit(df: pd.DataFrame, y: str = "comm_wait_s") -> pd.DataFrame:
    """Per aggregation mode: a, b (s/byte), effective GB/s, R² and mean relative error."""
    rows = []
    for mode, g in df.groupby("aggregation"):
        v, t = _volumes(g), g[y].to_numpy(float)
        design = np.column_stack([np.ones_like(v), v])
        (a, b), *_ = np.linalg.lstsq(design, t, rcond=None)
        pred = a + b * v
        ss = float(((t - t.mean()) ** 2).sum())
        rows.append({"aggregation": mode, "a": float(a), "b": float(b),
                     "effective_gb_s": 1 / b / 1e9 if b > 0 else float("inf"),
                     "r2": 1 - float(((t - pred) ** 2).sum()) / ss if ss > 0 else 1.0,
                     "rel_err": float(np.mean(np.abs(pred - t) / np.maximum(t, 1e-9))), "n": len(g)})
    return pd.DataFrame(rows)


def predict(model: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    coef = model.set_index("aggregation")
    a = coef.loc[df["aggregation"], "a"].to_numpy()
    b = coef.loc[df["aggregation"], "b"].to_numpy()
    return a + b * _volumes(df)


def project(payload: float, clients: int, nodes: int, mode: str, net: Network = Network(),
            compute_s: float = 0.0, fixed_s: float = 0.0) -> float:
    """Per-round seconds on `nodes` nodes (one rank each): `compute_s` per client times the
    busiest node's clients + the fixed cost + volume / bandwidth + messages · latency."""
    comm = (volume(mode, payload, clients, nodes) / net.bandwidth
            + messages(mode, clients, nodes) * net.latency)
    return float(compute_s * np.ceil(clients / nodes) + fixed_s + comm)
