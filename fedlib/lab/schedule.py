"""How long each of 08's arms must run to cover one virtual-time budget, known before it trains.

Virtual time (fedlib.sim.vclock's unit: local steps of a speed-1 client) depends on the speed
draws and the dispatch draws only, never on what the clients learn: a synchronous round lasts
until its slowest kept client (speed × steps, or the round's deadline when a client was late —
what `virtual_time.curve` reads back from clients.csv), and the asynchronous clock replays the
same `vclock.Clock` the server runs. So the number of rounds (server steps) after which an arm's
clock first reaches the budget is computed here from the config alone, and every arm of every
seed runs exactly far enough to be scored at the budget: none is cut short (a curve that ends
early is scored at an earlier time), none runs far past it (08's async arms apply several times
sync's client updates in the same virtual time, which is most of its cost).

The schedule needs each client's local steps without its shard: `client.local_steps` must be set.
"""

from __future__ import annotations

import math

from scipy import stats as _st

from ..config import ParticipationConfig, RunConfig
from ..sim import participation, vclock

MOST = 1_000_000  # server steps; a budget that needs more is a mistake in the parameters


def _steps(cfg: RunConfig) -> int:
    if cfg.participation.deadline_s is not None:
        raise ValueError("schedule: participation.deadline_s is in measured seconds, unknown before a run; "
                         "use participation.deadline_steps (virtual time)")
    if cfg.client.local_steps is None:
        raise ValueError("schedule: client.local_steps must be set (a client's virtual time is speed × its "
                         "local steps, known before training only when they do not depend on its shard)")
    return cfg.client.local_steps


def round_length(cfg: RunConfig, rnd: int) -> float:
    """Virtual length of synchronous round `rnd`: its slowest kept client's speed × steps, or the
    deadline (`participation.deadline_steps`) when a client was late; 0 when nobody was kept."""
    steps, deadline = _steps(cfg), cfg.participation.deadline_steps
    kept, late = [0.0], False
    for f in participation.fates(cfg, rnd):
        if f.drop:
            continue
        if participation.late(cfg.participation, f, float("nan"), steps):
            late = True
        else:
            kept.append(f.speed * steps)
    return float(deadline) if late and deadline is not None else max(kept)


def sync_time(cfg: RunConfig, rounds: int) -> float:
    """Virtual time of the first `rounds` synchronous rounds of `cfg`."""
    return float(sum(round_length(cfg, r) for r in range(1, rounds + 1)))


def sync_rounds(cfg: RunConfig, budget: float) -> tuple[int, float]:
    """(rounds, their virtual time): the fewest synchronous rounds whose clock reaches `budget`."""
    now, rnd = 0.0, 0
    while now < budget:
        rnd += 1
        if rnd > MOST:
            raise ValueError(f"schedule: {MOST} rounds do not reach virtual time {budget:g}")
        now += round_length(cfg, rnd)
    return rnd, now


def async_steps(cfg: RunConfig, budget: float) -> tuple[int, float]:
    """(server steps, their virtual time): the fewest FedBuff / FedAsync server steps whose clock
    reaches `budget` — the loop of fedlib.engine.virtual.step without training: hand out, take
    the next arrival, every `buffer_size` arrivals make a version."""
    draws, clock, k, steps = vclock.Draws.of(cfg), vclock.Clock(), cfg.buffer_size, _steps(cfg)
    version = 0
    while True:
        for _ in range(k):
            clock.fill(draws, version, lambda _cid: steps)
            clock.pop()
        version += 1
        clock.new_version()
        clock.fill(draws, version, lambda _cid: steps)
        if clock.now >= budget:
            return version, clock.now
        if version >= MOST:
            raise ValueError(f"schedule: {MOST} server steps do not reach virtual time {budget:g}")


def steps_to(cfg: RunConfig, budget: float) -> int:
    """`federation.rounds` for `cfg` (any mode on the virtual clock) to reach virtual time `budget`."""
    if budget <= 0:
        raise ValueError(f"schedule: the budget must be > 0 virtual time, got {budget!r}")
    if cfg.federation.mode == "sync":
        return sync_rounds(cfg, budget)[0]
    return async_steps(cfg, budget)[0]


def duration_quantile(p: ParticipationConfig, steps: int, q: float) -> float:
    """The q-quantile of one client's virtual duration, speed × steps, under the speed law of `p`:
    a deadline that drops the slowest (1 − q) of updates, from the law itself (no run needed)."""
    if not 0 < q < 1:
        raise ValueError(f"deadline quantile must be in (0, 1), got {q!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError("schedule: a deadline in virtual time needs client.local_steps (an int >= 1), "
                         f"got {steps!r}")
    if p.speed == "lognormal":
        return steps * math.exp(p.speed_sigma * float(_st.norm.ppf(q)))
    if p.speed == "uniform":
        return steps * (1.0 + q * (p.speed_max - 1.0))
    return float(steps)  # constant speed: every client takes `steps`
