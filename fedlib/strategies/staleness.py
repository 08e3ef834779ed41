"""Staleness weights s(τ) of asynchronous aggregation, τ = server versions between the model a
client trained from and the one its update is applied to. The three functions of Xie et al.
(2019), "Asynchronous Federated Optimization", §5.2:

    constant    s(τ) = 1
    polynomial  s(τ) = (τ + 1)^(−a)
    hinge       s(τ) = 1                    if τ ≤ b
                       1 / (a·(τ − b) + 1)  otherwise

FedBuff (Nguyen et al. 2022) weights by 1/√(1 + τ): polynomial with a = 0.5, the default.
"""

from __future__ import annotations

from ..config import StrategyConfig


def weight(tau: int, kind: str, a: float, b: float) -> float:
    """s(τ) in (0, 1]; a fresh update (τ = 0) always weighs 1."""
    if tau < 0:
        raise ValueError(f"staleness must be >= 0, got {tau}")
    if kind == "constant":
        return 1.0
    if kind == "polynomial":
        return float((tau + 1) ** (-a))
    if kind == "hinge":
        return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)
    raise ValueError(f"unknown staleness function {kind!r} (constant, polynomial or hinge)")


def of(tau: int, cfg: StrategyConfig) -> float:
    """s(τ) with strategy.staleness and its parameters."""
    return weight(tau, cfg.staleness, cfg.staleness_a, cfg.staleness_b)
