"""ε from Opacus's accountants; fedlib never computes privacy loss itself."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

History = Sequence[tuple[float, float, int]]  # (noise multiplier, sample rate, steps), as Opacus


def epsilon(history: History, delta: float, accountant: str = "rdp") -> float:
    """ε spent by `history` at `delta`. Memoized (a pure function of its numbers): the clients of a
    run, and the seeds of a sweep on the same engines, mostly ask the same questions."""
    if not history:
        return 0.0
    return _epsilon(tuple((float(s), float(q), int(n)) for s, q, n in history), float(delta), accountant)


@lru_cache(maxsize=4096)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    acc = create_accountant(accountant)
    acc.history = list(history)
    return float(acc.get_epsilon(delta=delta))


@lru_cache(maxsize=1024)  # Opacus's search is deterministic: the same question, the same σ
def noise_for(target_epsilon: float, delta: float, sample_rate: float, steps: int,
              accountant: str = "rdp") -> float:
    """The noise multiplier that spends `target_epsilon` in `steps` steps at `sample_rate`."""
    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=steps, accountant=accountant))


def noise_after(history: History, target_epsilon: float, delta: float, sample_rate: float,
                steps: int, accountant: str = "rdp", tolerance: float = 0.01) -> float:
    """The noise multiplier for `steps` more steps at `sample_rate` so that `history` plus them
    spends at most `target_epsilon` (within `tolerance` below it). With no history this is
    Opacus's own search; otherwise the same bisection on σ, each probe an Opacus composition of
    the whole history. Raises ValueError when the history has already spent the target."""
    if not history:
        return noise_for(target_epsilon, delta, sample_rate, steps, accountant)

    def eps(sigma: float) -> float:
        return epsilon([*history, (sigma, sample_rate, steps)], delta, accountant)

    spent = epsilon(history, delta, accountant)
    lo, hi = 0.0, 10.0
    while spent < target_epsilon and eps(hi) > target_epsilon and hi < 1e6:
        lo, hi = hi, 2 * hi
    if spent >= target_epsilon or eps(hi) > target_epsilon:
        raise ValueError(f"epsilon already spent is {spent:.4f}; no noise multiplier keeps {steps} "
                         f"more steps at sample rate {sample_rate:g} within {target_epsilon}")
    while target_epsilon - eps(hi) > tolerance and hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if eps(mid) <= target_epsilon else (mid, hi)
    return hi


def merge(history: list[list[float]], sigma: float, q: float, steps: int) -> list[list[float]]:
    """Append `steps` steps at (sigma, q), merging with the last entry when it matches."""
    if history and history[-1][0] == sigma and history[-1][1] == q:
        return [*history[:-1], [sigma, q, history[-1][2] + steps]]
    return [*history, [sigma, q, steps]]
