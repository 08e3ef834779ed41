"""Differential privacy where its mechanisms are meant to work, on a small machine: MiniLM's
frozen encoder runs once per example (`model.cache_features`, pooled features), so only the
classifier head trains and a round of 100 clients costs well under a second.

- client-level DP-FedAvg: 1,000 clients on MAG (17k titles, 7 fields), each round Poisson-
  sampled at q = 0.1, 100 rounds, δ = 1/(10·N) = 1e-4, ε ∈ {8, 2}, against the same run without DP;
- DP-SGD (Opacus) per client: 40 clients holding ~434 examples each, ε ∈ {8, 2} (δ = 1e-5,
  below 1/(10·n) for every client's n examples), against the same 40 clients without DP;
- `finetuned` (the full profile): the same two mechanisms on a model that is fine-tuned — the
  whole MiniLM, or its top-k layers on cached features of the rest — sized for a cluster;
- `on_tier` (the quick profile): DP-SGD on an accuracy notebook's fine-tuned tier (03's top-1
  encoder layer + head, 32 clients): its reference is that tier's IID run, the same configuration
  as 03's and 04's (`lab.accuracy.base`), so `fedlib reproduce` runs it once for all three.

Every setting scores the whole MAG test split (5,000 titles); each runs once per seed; `summary`
gives accuracy's mean, 95 % t-interval and n per setting, and `rounds` the accuracy and ε spent
after every evaluated round.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import config
from ..lab import accuracy, stats, sweep

HEAD = {"model.freeze_layers": "all", "model.cache_features": True, "model.pooling": "mean"}


MINILM_LAYERS = 6  # all-MiniLM-L6-v2: top-k trainable = embeddings + the first 6 - k layers frozen


def client_delta(clients: int) -> float:
    """δ for client-level DP over N clients: 1/(10·N), the largest the config accepts."""
    return 0.1 / clients


def client_level(clients: int, fraction: float, rounds: int, epsilons: list[float], clip: float = 0.5
                 ) -> list[dict]:
    """Client-level DP-FedAvg settings and their non-private reference (same clients and rounds)."""
    common = {"federation.num_clients": clients, "federation.fraction": fraction, "federation.rounds": rounds,
              "federation.eval_every": max(1, rounds // 10), "client.batch_size": 16}
    ref = {"setting": f"no DP ({clients} clients)", **common}  # δ is a DP key: the reference has none
    return [ref] + [{"setting": f"client-level eps={e:g} ({clients} clients)", **common,
                     "privacy.mode": "client", "privacy.target_epsilon": e, "privacy.clip": clip,
                     "privacy.delta": client_delta(clients)} for e in epsilons]


def sample_level(clients: int, rounds: int, epsilons: list[float]) -> list[dict]:
    """DP-SGD settings (every client, every round) and their non-private reference."""
    common = {"federation.num_clients": clients, "federation.fraction": 1.0, "federation.rounds": rounds,
              "federation.eval_every": 1, "client.batch_size": 32, "client.lr": 2e-2}
    ref = {"setting": f"no DP ({clients} clients)", **common}
    return [ref] + [{"setting": f"DP-SGD eps={e:g} ({clients} clients)", **common, "privacy.mode": "sample",
                     "privacy.target_epsilon": e, "privacy.max_grad_norm": 1.0, "privacy.delta": 1e-5}
                    for e in epsilons]


def trainable(part: str | int, layers: int = MINILM_LAYERS) -> tuple[str, dict]:
    """("whole model" | "top-k layers", the model overrides that train it). Top-k caches the
    frozen part's features (run once per example), as the head-only rows do."""
    if part == "all":
        return "whole model", {"model.freeze_layers": None, "model.cache_features": False}
    if not (isinstance(part, int) and 1 <= part < layers):
        raise ValueError(f"finetuned.trainable: {part!r} must be all or a layer count in [1, {layers - 1}]")
    return f"top-{part} layers", {"model.freeze_layers": layers - part, "model.cache_features": True}


def finetuned(spec: dict | None, layers: int = MINILM_LAYERS) -> list[dict]:
    """DP on a fine-tuned model (the full profile's `finetuned` parameter; None: no rows): for
    each trainable part, client-level DP-FedAvg (`clients` Poisson-sampled at `fraction`,
    `rounds` rounds) and DP-SGD (`dpsgd_clients`, `dpsgd_rounds`) at each of `epsilons`, each
    beside its non-private reference with the same part and clients; `lr` is the clients'."""
    if not spec:
        return []
    rows = []
    for part in spec["trainable"]:
        label, model = trainable(part, layers)
        lr = {"client.lr": spec.get("lr", 1e-4)}
        for r in (client_level(spec["clients"], spec["fraction"], spec["rounds"], spec["epsilons"])
                  + sample_level(spec["dpsgd_clients"], spec["dpsgd_rounds"], spec["epsilons"])):
            setting = r["setting"].replace(" clients)", f" clients, {label})")
            rows.append({**r, **model, **lr, "setting": setting})
    return rows


def on_tier(spec: dict | None, out: Path) -> tuple[config.RunConfig, list[dict], list[int]] | None:
    """DP-SGD on an accuracy notebook's tier (the quick profile's `dpsgd_tier`; None: no rows):
    (the tier's base config, the grid — its non-private reference, then DP-SGD at each of
    `epsilons` — and the tier's seeds). `spec` repeats the notebook's design (`rounds`,
    `num_clients`, `train_samples`, `eval_samples`, `setup`) and its `tier`, so that the
    reference is that notebook's IID run (one configuration: `runcache` reuses it); the tier's
    `seeds` here may be some of the notebook's (a DP row far from its margin needs fewer)."""
    if not spec:
        return None
    tier = spec["tier"]
    design = accuracy.base("privacy-tier", out, spec["rounds"], spec["train_samples"], spec["eval_samples"],
                           {"federation.num_clients": spec["num_clients"]}, spec["setup"])
    cfg = accuracy.configs(design, [tier])[0]
    what = f"{spec['num_clients']} clients, {spec.get('label', 'fine-tuned tier')}"
    grid = [{"setting": f"no DP ({what})"}] + [
        {"setting": f"DP-SGD eps={e:g} ({what})", "privacy.mode": "sample", "privacy.target_epsilon": e,
         "privacy.max_grad_norm": spec.get("max_grad_norm", 1.0)} for e in spec["epsilons"]]
    return cfg, grid, list(tier["seeds"])


def base(out: Path, data: str = "mag") -> config.RunConfig:
    return config.load(None, {
        "name": "privacy", "output_dir": str(out / "runs"), "model.name": "minilm", **HEAD,
        "data.name": data, "data.subset": "full", "data.max_length": 32, "data.max_eval_samples": None,
        "client.lr": 1e-2, "client.local_epochs": 1,
        "federation.checkpoint_every": 0, "federation.export": False,
    })


def grid(quick: bool) -> list[dict]:
    return (client_level(1000, 0.1, 100, [8.0, 2.0])
            + sample_level(40, 4 if quick else 10, [8.0, 2.0]))


def rounds(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and ε spent after every evaluated round, one row per (run, round)."""
    parts = []
    for _, r in runs.iterrows():
        df = pd.read_csv(Path(r["run_dir"]) / "rounds.csv")
        eps = df["epsilon"] if "epsilon" in df and df["epsilon"].notna().any() else df.get("eps_max")
        parts.append(pd.DataFrame({"setting": r["setting"], "seed": r["seed"], "round": df["round"],
                                   "accuracy": df["accuracy"], "epsilon": eps}).dropna(subset=["accuracy"]))
    return pd.concat(parts, ignore_index=True)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.assign(epsilon_reported=runs.get("epsilon", pd.Series(float("nan"), index=runs.index))
                       .fillna(runs.get("eps_max", pd.Series(float("nan"), index=runs.index))))
    table = stats.summarize(runs, "setting", ["accuracy", "epsilon_reported"])
    return table.set_index("setting").loc[list(dict.fromkeys(runs["setting"]))].reset_index()


def run(out: Path, quick: bool = False) -> pd.DataFrame:
    runs = sweep.run_grid(base(out), grid(quick), desc="privacy", seeds=[0, 1, 2])
    rounds(runs).to_csv(out / "privacy_rounds.csv", index=False)
    summary(runs).to_csv(out / "privacy_summary.csv", index=False)
    return runs
