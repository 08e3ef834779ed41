"""Who takes part in a round and what happens to them: client sampling, dropout (before or in
the middle of local training), stragglers (a speed factor per client turning measured compute
into simulated device time), a round deadline (in simulated seconds or in virtual time), and
rejection of non-finite updates (told by `fedlib.wire.flat.finite`).

Every draw comes from a generator seeded by (run seed, round, client id) — never by the rank —
so the same clients drop, straggle and arrive late whether 1 or 96 ranks host them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import seeds
from ..config import ParticipationConfig, RunConfig
from ..seeds import Stream


@dataclass(frozen=True)
class Fate:
    """What round `rnd` holds for one sampled client, decided before anyone trains."""

    client: int
    drop: str  # "" (stays), "before" (never trains) or "mid" (trains, update lost)
    step_fraction: float  # share of local steps a "mid" dropout completes (1.0 otherwise)
    speed: float  # simulated device time = measured compute x speed


def sample_clients(cfg: RunConfig, rnd: int) -> list[int]:
    """The clients taking part in round `rnd` (sorted), seeded by (seed, round).

    Under client-level DP each client is included independently with probability
    q = clients_per_round / num_clients (Poisson sampling, McMahan et al. 2018): that is the
    sampling the RDP/PRV accountants assume, so the count varies from round to round (and can
    be 0); with privacy.secure_noise it is drawn from OS entropy (`secret_sampling`: each rank
    would draw its own, so the loop draws it on one rank and shares it). Otherwise exactly
    clients_per_round clients, drawn without replacement."""
    fed = cfg.federation
    k = cfg.clients_per_round
    if secret_sampling(cfg):  # the sample the accountant assumes secret: from OS entropy
        return [int(c) for c in np.flatnonzero(seeds.os_uniform(fed.num_clients) < k / fed.num_clients)]
    rng = seeds.rng(cfg.seed, Stream.SAMPLING, rnd)
    if cfg.privacy.mode == "client":
        return [int(c) for c in np.flatnonzero(rng.random(fed.num_clients) < k / fed.num_clients)]
    if k >= fed.num_clients:
        return list(range(fed.num_clients))
    return sorted(int(c) for c in rng.choice(fed.num_clients, size=k, replace=False))


def speed_factor(p: ParticipationConfig, rng: np.random.Generator) -> float:
    if p.speed == "lognormal":
        return float(rng.lognormal(0.0, p.speed_sigma))
    if p.speed == "uniform":
        return float(rng.uniform(1.0, p.speed_max))
    return 1.0


def draws(p: ParticipationConfig) -> bool:
    """Whether a fate depends on its random draws: without dropout and with constant speed every
    client's fate is the same, and drawing it (a SeedSequence per sampled client, on every rank)
    would be pure overhead — tens of seconds per round at a million clients."""
    return p.dropout > 0 or p.speed != "constant"


def fate(p: ParticipationConfig, seed: int, rnd: int, cid: int) -> Fate:
    """The client's fate under the participation section `p` and the run seed; `step_fraction`
    is 1.0 unless it drops mid-round (the only case that reads it), so a fate is the same
    whether it was drawn or not."""
    if not draws(p):
        return Fate(cid, "", 1.0, 1.0)
    rng = seeds.rng(seed, Stream.FATE, rnd, cid)
    u, frac, speed = rng.random(), rng.random(), speed_factor(p, rng)
    drop = p.dropout_when if u < p.dropout else ""
    return Fate(cid, drop, frac if drop == "mid" else 1.0, speed)


def secret_sampling(cfg: RunConfig) -> bool:
    """Whether a round's sample must stay secret: client-level DP's ε relies on amplification by
    Poisson sampling, so under privacy.secure_noise the sample comes from OS entropy too."""
    return cfg.privacy.mode == "client" and cfg.privacy.secure_noise


def fates(cfg: RunConfig, rnd: int, clients: list[int] | None = None) -> list[Fate]:
    """Sampled clients of round `rnd` (`clients`, when drawn elsewhere) with their draws;
    identical on every rank (a secret sample is drawn once and shared: `secret_sampling`)."""
    sampled = sample_clients(cfg, rnd) if clients is None else clients
    return [fate(cfg.participation, cfg.seed, rnd, c) for c in sampled]


def steps_done(f: Fate, steps: int) -> int:
    """Local steps the client runs: all, or the part a mid-round dropout completes (>= 1)."""
    return max(1, int(f.step_fraction * steps)) if f.drop == "mid" else steps


def late(p: ParticipationConfig, f: Fate, sim_s: float, steps: int) -> bool:
    """Past the round's deadline: simulated seconds `sim_s` (measured compute x speed) against
    `deadline_s`, or virtual time (speed x local steps, fedlib.sim.vclock's unit) against
    `deadline_steps` — the same clients on any machine, so a deadline arm stays deterministic."""
    if p.deadline_steps is not None:
        return f.speed * steps > p.deadline_steps
    return p.deadline_s is not None and sim_s > p.deadline_s


def outcome(f: Fate, is_late: bool, is_finite: bool) -> str:
    """'ok' (folded into the sum), 'dropped', 'late' or 'rejected' (NaN/Inf update)."""
    if f.drop:
        return "dropped"
    if is_late:
        return "late"
    return "ok" if is_finite else "rejected"


def simulated_times(sims: list[float], deadline_s: float | None, any_late: bool) -> tuple[float, float]:
    """(round time, mean wait) on simulated devices: the round lasts until its slowest kept
    client (or `deadline_s` when someone was late); each kept client idles the difference. A
    deadline in virtual time (`deadline_steps`) has no seconds: the round ends with its slowest
    kept client (fedlib.lab.virtual_time gives its virtual length)."""
    if not sims:
        return (deadline_s or 0.0) if any_late else 0.0, 0.0
    end = deadline_s if any_late and deadline_s is not None else max(sims)
    return float(end), float(np.mean([end - s for s in sims]))
