"""ε from Opacus's accountants; fedlib never computes privacy loss itself."""

from __future__ import annotations

from collections.abc import Sequence

from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

History = Sequence[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), as Opacus


def epsilon(history: History, delta: float, accountant: str = "rdp") -> float:
    if not history:
        return 0.0
    acc = create_accountant(accountant)
    acc.history = [tuple(h) for h in history]
    return float(acc.get_epsilon(delta=delta))


def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int,
              accountant: str = "rdp") -> float:
    """The noise multiplier that spends `target_epsilon` in `steps` steps at `sample_rate`."""
    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=steps, accountant=accountant))


def merge(history: list[list[float]], sigma: float, q: float, steps: int) -> list[list[float]]:
    """Append `steps` steps at (sigma, q), merging with the last entry when it matches."""
    if history and history[-1][0] == sigma and history[-1][1] == q:
        return [*history[:-1], [sigma, q, history[-1][2] + steps]]
    return [*history, [sigma, q, steps]]
