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
    assert set(seeds) <= set(p3["tiers"][1]["seeds"])  # DP-SGD on some of the tier's seeds
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


def _tier_rows(part, params, seeds, arms):
    """Per-run rows of one tier: `arms` maps an axis setting to its accuracy per seed."""
    return [{"model": "minilm", "algorithm": "fedavg", "trainable": part, "params": params, "clients": 32,
             "rounds": 10, "majority_rate": 0.15, "seed": s, **axis, "accuracy": acc[i]}
            for axis, acc in arms for i, s in enumerate(seeds)]


def test_a_claim_is_made_per_tier_never_pooled():
    """A probe with 5 seeds and a fine-tuned layer with 3 (their own α) in one 03 table: one claim per
    tier and α, each paired over its own seeds (pooled, the seeds repeat and the row was Welch's over
    a mixture of a 0.69 and a 0.66 model); an α of the canonical list no tier ran: one "not run" row."""
    import pandas as pd

    from fedlib.lab import claims

    iid, a03 = {"partition.kind": "iid"}, {"partition.kind": "dirichlet", "partition.alpha": 0.3}
    a10 = {"partition.kind": "dirichlet", "partition.alpha": 1.0}
    probe = _tier_rows("head", 2695, [0, 1, 2, 3, 4], [
        (iid, [0.690, 0.691, 0.689, 0.692, 0.690]), (a03, [0.688, 0.690, 0.686, 0.690, 0.689]),
        (a10, [0.690, 0.690, 0.689, 0.691, 0.690])])
    top1 = _tier_rows("layers above 5", 1777159, [0, 1, 2], [
        (iid, [0.670, 0.667, 0.677]), (a03, [0.600, 0.610, 0.590])])
    rows = claims.heterogeneity_claims(pd.DataFrame(probe + top1))
    text = [r["claim"] for r in rows]
    assert len(text) == len(set(text)) == 4, text
    wanted = (("α=0.3", "linear probe"), ("α=1 ", "linear probe"), ("α=0.3", "top-1 encoder"), ("α=0.1",))
    head03, head10, top03, not_run = (next(r for r in rows if all(w in r["claim"] for w in words))
                                      for words in wanted)
    assert head03["n"] == 5 and "paired" in head03["measure"] and head03["verdict"] == claims.HOLDS
    assert top03["n"] == 3 and "paired" in top03["measure"] and top03["verdict"] == claims.FAILS
    assert abs(top03["effect"] - (0.600 - 0.670 + 0.610 - 0.667 + 0.590 - 0.677) / 3) < 1e-12
    assert head10["verdict"] == claims.HOLDS and not_run["note"] == "not run in this profile"

    p = [{"participation.dropout": 0.0}, {"participation.dropout": 0.5}]
    drop = claims.dropout_claims(pd.DataFrame(
        _tier_rows("head", 2695, [0, 1, 2, 3, 4], [(p[0], [0.69] * 5), (p[1], [0.689] * 5)])
        + _tier_rows("layers above 5", 1777159, [0, 1, 2], [(p[0], [0.670, 0.667, 0.677]),
                                                              (p[1], [0.664, 0.663, 0.676])])))
    by = {("probe" if "linear probe" in r["claim"] else "top1" if "top-1" in r["claim"] else "none",
           r["claim"].split(" vs")[0][-5:]): r for r in drop}
    assert by[("top1", "p=0.5")]["n"] == 3 and by[("probe", "p=0.5")]["n"] == 5
    assert by[("none", "p=0.2")]["note"] == "not run in this profile"


def test_a_tier_is_planned_from_its_pilots_paired_sd():
    """Known answer: differences −0.01, 0, −0.02 (sd 0.01 on 2 dof; its 80 % upper bound
    0.01·√(2/χ²₀.₂(2)) = 0.01·√(2/0.44629) = 0.021169). Resolving 0.015 from the margin at 80 %
    power needs (t₀.₉₇₅(n−1) + t₀.₈(n−1))·0.021169/√n ≤ 0.015: n = 17 gives (2.120 + 0.865)/√17 =
    0.724 > 0.7086, n = 18 gives (2.110 + 0.863)/√18 = 0.7008 ≤ 0.7086 (t-table values)."""
    import pandas as pd

    from fedlib.lab import power

    pilot = pd.DataFrame({"arm": ["iid"] * 3 + ["skew"] * 3 + ["wide"] * 3, "seed": [0, 1, 2] * 3,
                          "accuracy": [0.5, 0.6, 0.7, 0.49, 0.60, 0.68, 0.5, 0.6, 0.7]})
    seeds, table = accuracy.plan(pilot, "iid", 0.015, arms=["skew"])
    assert seeds == 18
    skew = table.set_index("arm").loc["skew"]
    assert (skew["n"], skew["dof"]) == (3, 2)
    assert abs(skew["mean"] + 0.01) < 1e-12 and abs(skew["sd"] - 0.01) < 1e-12
    assert power.mde(17, 0.01, 2) > 0.015 >= skew["mde"]
    assert table.set_index("arm").loc["wide", "sd"] == 0.0  # identical runs: an sd of 0


def test_the_quick_top1_seeds_are_the_pilots_plan():
    """The committed pilot (seeds 0-2, before the record) sizes the quick profile's top-1 tier: 4
    seeds resolve 0.015 from the margin for α=0.3 and dropout 0.5, and 0.4 for DP-SGD; the record's
    seeds are not the pilot's."""
    import pandas as pd

    pilot = pd.read_csv(books.REPO_ROOT / "outputs" / "pilots" / "top1_quick.csv")
    n, table = accuracy.plan(pilot, "iid", 0.015, ["dir0.3", "drop0.5"])
    dp_n, _ = accuracy.plan(pilot, "iid", 0.4, ["dpsgd8"])
    mde = table.set_index("arm")["mde"]
    assert (n, dp_n) == (4, 4) and mde["dir0.3"] <= 0.015 and mde["drop0.5"] <= 0.015
    tiers = [_params("quick", nb)["tiers"][1] for nb in ("03_heterogeneity", "04_dropout")]
    dp_seeds = _params("quick", "05_privacy")["dpsgd_tier"]["tier"]["seeds"]
    assert [len(t["seeds"]) for t in tiers] == [n, n] and len(dp_seeds) == dp_n
    assert not set(pilot["seed"]) & set(tiers[0]["seeds"])
