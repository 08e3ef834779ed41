"""fedlib.lab.sweep.budget: every sweep row says what produced it — trainable part, cached
features, the client's workload, evaluation examples of how many in the split, δ of a DP run —
the columns the claims table (`fedlib.lab.verdict.produced`) reports."""

from fedlib import config
from fedlib.lab import sweep


def test_budget_names_workload_eval_examples_and_delta():
    cfg = config.load(None, {"data.name": "mag", "data.subset": "tiny", "data.max_eval_samples": 300,
                             "data.max_length": 32, "client.local_steps": 3, "client.batch_size": 4,
                             "model.freeze_layers": "all", "model.cache_features": True,
                             "privacy.mode": "client", "privacy.noise_multiplier": 1.0,
                             "privacy.delta": 1e-4})
    b = sweep.budget(cfg)
    assert (b["trainable"], b["cached_features"]) == ("head", True)
    assert (b["local_steps"], b["batch_size"], b["max_length"]) == (3, 4, 32)
    assert (b["eval_examples"], b["eval_split_size"], b["delta"]) == (300, 500, 1e-4)  # mag/tiny/test.jsonl
    whole = sweep.budget(config.load(None, {"data.name": "mag", "data.subset": "tiny"}))
    assert (whole["eval_examples"], whole["delta"], whole["cached_features"]) == (500, None, False)
