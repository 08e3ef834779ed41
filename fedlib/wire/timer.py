"""Seconds per phase of a round on this rank: the instrumentation every wire piece and the
round loop share, so one breakdown (compute / pack / wait / comm / copy / aggregate / ...)
covers all. `copy` is the host staging of device buffers a comm backend needed, carved out of
the comm seconds it happened in (`move`).
"""

from __future__ import annotations

import time

PHASES = ("compute", "pack", "wait", "comm", "copy", "aggregate", "eval", "checkpoint", "other")


class _Phase:
    """`with timer(phase):` — a plain context manager (a generator-based one costs more, and a
    round enters one or two per client)."""

    __slots__ = ("s", "phase", "t")

    def __init__(self, s: dict[str, float], phase: str) -> None:
        self.s, self.phase = s, phase

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.s[self.phase] += time.perf_counter() - self.t


class Timer:
    """Seconds per phase on this rank; `with timer("comm"): ...`."""

    def __init__(self) -> None:
        self.s: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.t0 = time.perf_counter()

    def __call__(self, phase: str) -> _Phase:
        return _Phase(self.s, phase)

    def move(self, src: str, dst: str, seconds: float) -> None:
        """Re-label `seconds` of `src` as `dst` (at most what `src` holds)."""
        s = min(max(seconds, 0.0), self.s[src])
        self.s[src] -= s
        self.s[dst] += s

    def close(self) -> dict[str, float]:
        """The phases plus `round` (wall) and `other` (what no phase covered)."""
        wall = time.perf_counter() - self.t0
        self.s["other"] = max(0.0, wall - sum(v for k, v in self.s.items() if k != "other"))
        return {**self.s, "round": wall}
