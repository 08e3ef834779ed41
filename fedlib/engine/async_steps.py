"""What both asynchronous clocks share (fedlib.engine.virtual: virtual, fedlib.engine.wall: wall):
how one task trains — as a round trains a client (`Context.train`), from its version's weights
for round version + 1, so with the seed (version + 1, client) — and what it sends, Δ = client −
base for FedBuff or the client's weights for FedAsync; and how the server applies the updates of
one step, in arrival order, with the staleness each had."""

from __future__ import annotations

import torch

from .. import privacy
from ..record.metrics import Timer
from ..sim import client
from ..strategies import ServerState, fedasync, fedbuff
from .context import Context


def train_task(ctx: Context, mech: privacy.Mechanism, cid: int, version: int, base: torch.Tensor,
               out: torch.Tensor, timer: Timer) -> client.ClientResult:
    """Train client `cid` from `base` (server version `version`); its payload goes into `out`."""
    res, _ = ctx.train(mech, cid, version + 1, base, timer)  # the server diverges on a non-finite one
    with timer("pack"):
        if ctx.cfg.federation.mode == "fedbuff":
            ctx.flat.delta_into(out, base)
        else:
            out.copy_(ctx.flat.get())
    return res


def apply(ctx: Context, mech: privacy.Mechanism, state: ServerState,
          updates: list[tuple[int, int, torch.Tensor]]) -> ServerState:
    """One server step on `updates` = (client, staleness τ, payload), in the order they arrived:
    FedAsync mixes its one update in, FedBuff applies the weighted, staleness-scaled mean."""
    cfg = ctx.cfg
    if cfg.federation.mode == "fedasync":
        (_, tau, payload), = updates
        return fedasync.step(state, payload, tau, cfg.strategy)
    arrivals = [fedbuff.Arrival(mech.weight(len(ctx.shards[cid])), tau, p) for cid, tau, p in updates]
    return fedbuff.step(state, arrivals, cfg.strategy)
