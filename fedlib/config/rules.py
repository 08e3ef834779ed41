"""Rules across config sections that concern one mechanism each: client-level DP's guarantee,
what an asynchronous mode cannot honour, and what the wall clock needs. Each raises
ConfigError naming the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import _require

if TYPE_CHECKING:
    from .schema import RunConfig


def check_client_dp(cfg: RunConfig) -> None:
    """Client-level DP protects one client among N: δ above 1/N allows a mechanism that
    publishes a random client's data outright, so δ must sit well below it (1/(10·N)); and
    the clip bound C must hold for what is summed, which a 16-bit payload breaks: the
    clipped update is rounded (plus an error-feedback residual) after clipping, so its norm
    can exceed C (at C = 1 in bf16: 0.99989 → 1.00009 by plain rounding, → 1.00016 with error
    feedback; tests/privacy/test_modes.py) and the noise no longer covers it."""
    if cfg.privacy.mode != "client":
        return
    n, delta = cfg.federation.num_clients, cfg.privacy.delta
    _require(delta <= 1 / (10 * n), "privacy.delta",
             f"is {delta:g}, but client-level DP over federation.num_clients={n} needs delta <= "
             f"1/(10·N) = {1 / (10 * n):.3g}")
    _require(cfg.federation.payload_dtype == "fp32", "federation.payload_dtype",
             f"is {cfg.federation.payload_dtype}: privacy.mode=client clips each update to "
             "privacy.clip, and rounding to 16 bits after the clip can exceed it; use fp32")


def check_async(cfg: RunConfig) -> None:
    """What an asynchronous mode (fedlib.engine.virtual) cannot honour, refused with the reason."""
    fed, mode = cfg.federation, cfg.federation.mode
    _require(cfg.concurrency <= fed.num_clients, "federation.concurrency",
             f"is {cfg.concurrency} but there are only {fed.num_clients} clients")
    _require(mode != "fedasync" or fed.buffer_size is None, "federation.buffer_size",
             "fedasync applies every update as it arrives; leave buffer_size null (or use mode: fedbuff)")
    _require(cfg.buffer_size <= cfg.concurrency, "federation.buffer_size",
             f"is {cfg.buffer_size} but only {cfg.concurrency} clients train at once "
             "(federation.concurrency)")
    _require(cfg.privacy.mode != "client", "privacy.mode",
             f"client-level DP has no accountant for {mode}'s sampling (clients drawn as slots free up); "
             "use mode: sync, or privacy.mode: sample")
    _require(cfg.privacy.target_epsilon is None, "privacy.target_epsilon",
             f"plans sigma for synchronous rounds; with mode: {mode} give privacy.noise_multiplier")
    p = cfg.participation
    _require(p.dropout == 0 and p.deadline_s is None and p.deadline_steps is None, "participation.dropout",
             f"dropout and deadlines are synchronous-round notions; mode: {mode} models slowness "
             "by the clock")
    _require(fed.aggregation == "collective" and fed.payload_dtype == "fp32" and not fed.error_feedback,
             "federation.aggregation", f"mode: {mode} gathers fp32 updates with the collective; leave "
             "aggregation: collective, payload_dtype: fp32, error_feedback: false")


def check_wall(cfg: RunConfig) -> None:
    """The wall clock (fedlib.engine.wall) is real asynchrony between an asynchronous server and
    its worker ranks: it needs an async mode and talks over MPI point to point (DP-SGD's
    spending needs no gathering: the server charges each task as it hands it out).
    `emulate_speed` sleeps on that clock only (the virtual clock already counts the speed
    factor). How many ranks run is a run-time fact, not a config one: one rank serves and
    trains in turn."""
    fed, wall = cfg.federation, cfg.federation.clock == "wall"
    _require(not cfg.participation.emulate_speed or wall, "participation.emulate_speed",
             "sleeps to make stragglers real on federation.clock: wall; the virtual clock and sync rounds "
             "already count the speed factor")
    if not wall:
        return
    _require(fed.mode != "sync", "federation.clock",
             "wall is the asynchronous server's clock; set federation.mode: fedbuff or fedasync")
    _require(fed.backend == "mpi", "federation.backend",
             "federation.clock: wall sends tasks and updates point to point over MPI; use backend: mpi")
