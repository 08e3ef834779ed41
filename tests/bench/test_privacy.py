"""The 05_privacy grid: every profile's rows are valid configs (δ ≤ 1/(10·N) for client-level
DP, whole split scored), the full profile has DP on a fine-tuned model (§6), and that code path
runs at toy size."""

import pytest

from fedlib import config, runner
from fedlib.bench import privacy as dp
from fedlib.lab import reproduce
from tests.conftest import tiny_overrides


def _grid(p: dict) -> list[dict]:
    """The notebook's grid cell."""
    return (dp.client_level(p["num_clients"], p["fraction"], p["rounds"], p["client_epsilons"])
            + dp.sample_level(p["dpsgd_clients"], p["dpsgd_rounds"], p["sample_epsilons"])
            + dp.finetuned(p["finetuned"]))


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_privacy_row_is_a_valid_config(profile, tmp_path):
    p = reproduce.parameters(profile, "05_privacy")
    base = dp.base(tmp_path, p["data"])
    assert base.data.max_eval_samples is None  # the whole test split
    cfgs = [config.replace(base, **{k: v for k, v in row.items() if "." in k}) for row in _grid(p)]
    for c in cfgs:
        if c.privacy.mode == "client":
            assert c.privacy.delta <= 1 / (10 * c.federation.num_clients)
    if profile == "quick":
        assert all(c.model.frozen == "all" for c in cfgs)  # the head alone: fine-tuned rows in full
        return
    tuned = [c for c in cfgs if c.model.frozen != "all"]
    client = [c for c in tuned if c.privacy.mode == "client"]
    sample = [c for c in tuned if c.privacy.mode == "sample"]
    for rows in (client, sample):  # whole model and top-2 layers, each at ε 8 and 2
        assert {(c.model.frozen, c.privacy.target_epsilon) for c in rows} == {
            (f, e) for f in (None, dp.MINILM_LAYERS - 2) for e in (8.0, 2.0)}
    assert all(c.federation.num_clients >= 1000 and c.federation.rounds >= 100 for c in client)
    assert all(c.privacy.delta <= 1e-4 for c in client)
    refs = [c for c in tuned if c.privacy.mode == "none"]
    assert len(refs) == 4  # each part's reference for each mechanism's clients


def test_finetuned_rows_run_at_toy_size(tmp_path):
    """The full profile's fine-tuned DP rows, shrunk: the 2-layer test model, whole or top-1."""
    spec = {"trainable": ["all", 1], "clients": 6, "fraction": 0.5, "rounds": 1, "dpsgd_clients": 3,
            "dpsgd_rounds": 1, "epsilons": [8.0], "lr": 1e-3}
    rows = [r for r in dp.finetuned(spec, layers=2) if r.get("privacy.mode")]
    assert [(r["privacy.mode"], r["model.freeze_layers"]) for r in rows] == [
        ("client", None), ("sample", None), ("client", 1), ("sample", 1)]
    for i, row in enumerate(rows[:1] + rows[3:]):  # whole model client-level, top-1 DP-SGD
        over = {k: v for k, v in row.items() if "." in k and not k.startswith("federation.eval")}
        cfg = config.load(None, tiny_overrides(tmp_path, name=f"ft{i}", **over, **{
            "client.local_steps": 2, "federation.export": False, "data.max_train_samples": 48,
            "data.max_eval_samples": 16}))
        res = runner.run(cfg, progress=False)
        eps = res.summary.get("epsilon", res.summary.get("eps_max"))
        assert res.state.round == 1 and 0 < eps <= 8.0 and res.summary["delta"] == row["privacy.delta"]
    with pytest.raises(ValueError, match="finetuned.trainable"):
        dp.trainable(6)
