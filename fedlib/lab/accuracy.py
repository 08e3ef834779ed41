"""What the accuracy notebooks (02-05) train, and the one run configuration they start from.

A notebook's rows come in *tiers* of what trains, each with its own setup and its own seeds:
in the quick profile a linear probe on MiniLM's frozen, cached, mean-pooled features (2,695
params) and the top encoder layer + head on cached layer-5 hidden states (1.8M params). A verdict
about one tier does not transfer to the other (a probe is a convex problem, fine-tuning is
not), so each tier is its own claim. A tier's seeds are chosen before the run from a pilot's
paired sd (`power`), which is why they may differ between tiers.

`base` is the one configuration 02, 03 and 04 build on, so that their IID reference (02 at 03's
clients, 03's `iid` setting, 04's dropout 0) is one run per tier and seed: `runcache` runs it once
and the later notebooks reuse it. What would break the sharing — a notebook setting a key the
others do not — is what `tests/lab/test_accuracy.py` checks on every profile's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import config

if TYPE_CHECKING:
    from .engines import Pool

# The clients' speeds: simulated device time = measured compute × a lognormal factor. They change
# no update (no deadline: every client is waited for), only the simulated round time 04 reports,
# so every accuracy notebook carries them and 02/03/04's IID runs stay one configuration.
SPEEDS: dict[str, Any] = {"participation.speed": "lognormal", "participation.speed_sigma": 0.8,
                          "participation.dropout_when": "mid"}


def base(name: str, out: str | Path, rounds: int, train_samples: int | None, eval_samples: int | None,
         over: Mapping[str, Any] | None = None, setup: Mapping[str, Any] | None = None) -> config.RunConfig:
    """The accuracy notebooks' run: MiniLM, 2 local epochs, batch 16, evaluated after the last
    round, no checkpoints or exports, `SPEEDS`; then the notebook's own dotted overrides `over`
    (02: its learning rate; 03: its clients), then its `setup` last."""
    return config.load(None, {
        "name": name, "output_dir": str(Path(out) / "runs"), "model.name": "minilm",
        "data.max_length": 64, "data.max_train_samples": train_samples, "data.max_eval_samples": eval_samples,
        "client.lr": 5e-4, "client.local_epochs": 2, "client.batch_size": 16,
        "federation.rounds": rounds, "federation.eval_every": rounds, "federation.checkpoint_every": 0,
        "federation.export": False, **SPEEDS, **(over or {}), **(setup or {}),
    })


def check(tiers: Sequence[Mapping[str, Any]], where: str = "tiers") -> None:
    """Each tier: a `setup` mapping of config overrides and a non-empty list of distinct `seeds`."""
    if not tiers:
        raise ValueError(f"{where}: give at least one tier ({{setup: {{...}}, seeds: [...]}})")
    for i, t in enumerate(tiers):
        if not isinstance(t.get("setup"), Mapping):
            raise ValueError(f"{where}[{i}]: `setup` must be a mapping of config overrides")
        seeds = t.get("seeds")
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"{where}[{i}]: `seeds` must be a non-empty list of distinct seeds, "
                             f"got {seeds!r}")


def configs(base_cfg: config.RunConfig, tiers: Sequence[Mapping[str, Any]]) -> list[config.RunConfig]:
    """Each tier's base: `base_cfg` with the tier's setup applied last."""
    check(tiers)
    return [config.replace(base_cfg, **dict(t["setup"])) for t in tiers]


def sweep(pool: Pool, base_cfg: config.RunConfig, tiers: Sequence[Mapping[str, Any]],
          grid_of: Callable[[Mapping[str, Any]], list[dict[str, Any]]], desc: str) -> pd.DataFrame:
    """Every tier's grid (`grid_of(tier)`: a tier may run fewer settings than another) once per
    its seeds; one table, each row with its `trainable` part and `params` (sweep's columns)."""
    parts = [pool.sweep(cfg, grid_of(t), desc=f"{desc} ({i + 1}/{len(tiers)})", seeds=list(t["seeds"]))
             for i, (cfg, t) in enumerate(zip(configs(base_cfg, tiers), tiers, strict=True))]
    return pd.concat(parts, ignore_index=True)


def pilot_sd(pilot: pd.DataFrame, ref: str) -> pd.DataFrame:
    """Per arm of a pilot (columns arm, seed, accuracy) other than `ref`: the paired difference
    arm − ref over the seeds both ran — n, mean, sd of one seed's difference, its dof."""
    r = pilot[pilot["arm"] == ref].set_index("seed")["accuracy"]
    rows = []
    for arm, g in pilot[pilot["arm"] != ref].groupby("arm", sort=False):
        d = (g.set_index("seed")["accuracy"] - r).dropna()
        rows.append({"arm": arm, "n": len(d), "mean": float(d.mean()),
                     "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"), "dof": len(d) - 1})
    return pd.DataFrame(rows)


def plan(pilot: pd.DataFrame, ref: str, distance: float,
         arms: Sequence[str] | None = None) -> tuple[int, pd.DataFrame]:
    """Seeds for a tier, chosen before its run: the fewest that resolve, with 80 % power, a true
    effect `distance` from the margin in every arm of `arms` (default: all), planning on the upper
    bound of each arm's pilot sd (`power.seeds_for`); and each arm's MDE at that many seeds."""
    from . import power

    table = pilot_sd(pilot, ref)
    chosen = table if arms is None else table[table["arm"].isin(arms)]
    need = [power.seeds_for(distance, r.sd, r.dof) for r in chosen.itertuples()]
    if any(n is None for n in need):
        raise ValueError(f"plan: no seed count up to 1000 resolves {distance:g} for {list(chosen['arm'])}")
    seeds = max(n for n in need if n is not None)
    mde = [power.mde(seeds, r.sd, r.dof) if r.dof > 0 else float("nan") for r in table.itertuples()]
    return seeds, table.assign(seeds=seeds, mde=mde)
