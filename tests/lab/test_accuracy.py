"""fedlib.lab.accuracy: the accuracy notebooks' tiers, and the IID reference 02, 03, 04 (and 05's
fine-tuned DP rows) share — one configuration per tier and seed, so one run-cache key."""

from pathlib import Path

import pytest

from fedlib import config
from fedlib.bench import privacy
from fedlib.lab import accuracy, books, runcache, sweep

OUT = Path("/nowhere")  # where a run is written is not part of its key


def _params(profile, name):
    return books.parameters(profile, name)


def _run(base, entry, seed):
    """The config a sweep runs for one grid entry and seed (labels, without a dot, left out)."""
    return config.replace(base, seed=seed, **{k: v for k, v in entry.items() if "." in k})


def references(profile):
    """{(tier setup, seed): {notebook: cache key of its IID / no-dropout / no-DP run}}."""
    p3, p4 = _params(profile, "03_heterogeneity"), _params(profile, "04_dropout")
    b3 = accuracy.base("het", OUT, p3["rounds"], p3["train_samples"], p3["eval_samples"],
                       {"federation.num_clients": p3["num_clients"]}, p3["setup"])
    b4 = accuracy.base("drop", OUT, p4["rounds"], p4["train_samples"], p4["eval_samples"],
                       {"federation.num_clients": p4["num_clients"],
                        "participation.deadline_s": p4["deadline_s"]}, p4["setup"])
    found: dict = {}
    for nb, b, tiers, entry in (("03", b3, p3["tiers"], {"partition.kind": "iid"}),
                                ("04", b4, p4["tiers"], {"participation.dropout": 0.0})):
        for cfg, tier in zip(accuracy.configs(b, tiers), tiers, strict=True):
            for s in tier["seeds"]:
                found.setdefault((repr(sorted(tier["setup"].items())), s), {})[nb] = runcache.key(
                    _run(cfg, entry, s), 2)
    return found


def test_the_quick_profiles_iid_reference_is_one_run_per_tier_and_seed():
    refs = references("quick")
    assert len({k[0] for k in refs}) == 2  # the linear probe and the top-1 tier
    for k, keys in refs.items():
        assert set(keys) == {"03", "04"} and keys["03"] == keys["04"], k
    # 02's run at 03's clients is the probe tier's IID run
    p2, p3 = _params("quick", "02_accuracy_vs_clients"), _params("quick", "03_heterogeneity")
    assert p3["num_clients"] in p2["clients"]
    b2 = accuracy.base("acc", OUT, p2["rounds"], p2["train_samples"], p2["eval_samples"],
                       {"client.lr": p2["lr"]}, p2["setup"])
    probe = repr(sorted(p3["tiers"][0]["setup"].items()))
    for s in p2["seeds"]:
        entry = {"model.name": "minilm", "federation.num_clients": p3["num_clients"],
                 **sweep.algorithm("fedavg"), "partition.kind": "iid"}
        assert runcache.key(_run(b2, entry, s), 2) == refs[(probe, s)]["03"], s
    # 05's DP-SGD tier: its non-private reference is 03's IID run of the same tier
    cfg, grid, seeds = privacy.on_tier(_params("quick", "05_privacy")["dpsgd_tier"], OUT)
    assert grid[0]["setting"].startswith("no DP") and set(grid[0]) == {"setting"}
    top1 = repr(sorted(p3["tiers"][1]["setup"].items()))
    assert seeds == p3["tiers"][1]["seeds"]
    for s in seeds:
        assert runcache.key(_run(cfg, grid[0], s), 2) == refs[(top1, s)]["03"], s
    assert all(runcache.key(_run(cfg, g, s), 2) != refs[(top1, s)]["03"] for g in grid[1:] for s in seeds)


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_03_and_04_share_their_reference_in_every_profile(profile):
    for k, keys in references(profile).items():
        if len(keys) == 2:
            assert keys["03"] == keys["04"], (profile, k)


def test_the_quick_tiers_are_a_linear_probe_and_the_top_encoder_layer():
    for nb in ("03_heterogeneity", "04_dropout"):
        probe, top1 = _params("quick", nb)["tiers"]
        assert probe["setup"]["model.freeze_layers"] == "all" and probe["setup"]["model.cache_features"]
        assert top1["setup"]["model.freeze_layers"] == 5 and top1["setup"]["model.cache_features"]
        assert len(top1["seeds"]) >= 2


def test_a_tier_needs_a_setup_and_distinct_seeds():
    with pytest.raises(ValueError, match="at least one tier"):
        accuracy.check([])
    with pytest.raises(ValueError, match=r"tiers\[0\]: `setup`"):
        accuracy.check([{"seeds": [0]}])
    with pytest.raises(ValueError, match=r"tiers\[1\]: `seeds`"):
        accuracy.check([{"setup": {}, "seeds": [0]}, {"setup": {}, "seeds": [1, 1]}])


def test_each_tier_runs_its_own_grid_and_seeds(tiny_cfg):
    from fedlib.lab import engines

    base = tiny_cfg(**{"federation.rounds": 1, "federation.export": False})
    tiers = [{"setup": {}, "seeds": [0, 1]},
             {"setup": {"model.freeze_layers": 1}, "seeds": [3], "clients": [3]}]
    with engines.start("local") as pool:
        runs = accuracy.sweep(pool, base, tiers, lambda t: [{"federation.num_clients": n}
                                                            for n in t.get("clients", [2, 4])], desc="t")
    assert runs[["trainable", "clients", "seed"]].values.tolist() == [
        ["full", 2, 0], ["full", 2, 1], ["full", 4, 0], ["full", 4, 1], ["layers above 1", 3, 3]]
    assert runs.groupby("trainable")["params"].max()["layers above 1"] < runs["params"].max()
