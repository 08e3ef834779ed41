"""Differential privacy as a wrapper around the round: a `Mechanism` decides how a client
trains, how its update is bounded and weighted, what noise the aggregate gets, what it costs
in ε, and whether the budget allows another round. The runner calls the same hooks whatever
the mode; `none` leaves everything as it is.

- ``sample``: DP-SGD on every client with Opacus (fedlib.privacy.dpsgd);
- ``client``: DP-FedAvg, clip each update, Gaussian noise on the sum (fedlib.privacy.client_level);
  clients are Poisson-sampled (fedlib.sim.participation.sample_clients), as its accountant assumes.

ε always comes from an Opacus accountant over the history of what each round actually used,
kept in ``ServerState.extra`` (so it is checkpointed and composes across resumes).

Noise is drawn from a generator seeded by the run seed (fedlib.seeds): a reproducible
*simulation* of the mechanism, not a privacy guarantee — anyone with the config can replay the
noise. ``privacy.secure_noise: true`` draws it from the operating system's entropy instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ..config import RunConfig
from .mechanism import Mechanism

if TYPE_CHECKING:
    from ..learn.data import TextSplit
    from ..wire.comm import Comm

__all__ = ["Mechanism", "make"]


def make(cfg: RunConfig, shards: list[TextSplit], model: nn.Module, comm: Comm) -> Mechanism:
    # the DP modes load opacus (seconds): imported here, so a run without DP never loads it
    if cfg.privacy.mode == "client":
        from .client_level import ClientLevel
        return ClientLevel(cfg, comm)
    if cfg.privacy.mode == "sample":
        from .dpsgd import SampleLevel
        return SampleLevel(cfg, [len(s) for s in shards], model)
    return Mechanism()
