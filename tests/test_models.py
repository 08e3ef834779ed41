import pytest
import torch

from fedlib import config, models
from fedlib.wire.flat import FlatParams


@pytest.mark.parametrize(("name", "params_m"), [
    ("albert-base-v2", 11.7), ("bert-base-uncased", 109.5), ("deberta-v3-base", 184.4),
])
def test_presets_have_the_real_sizes(name, params_m):
    cfg = models.preset_config(name)
    with torch.device("meta"):
        m = models.AutoModelForSequenceClassification.from_config(cfg)
    n = sum(p.numel() for p in m.parameters()) / 1e6
    assert abs(n - params_m) / params_m < 0.02, n


def test_local_checkpoint_dir_round_trip(tmp_path):
    cfg = config.ModelConfig(name="bert-base-uncased", overrides={
        "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32})
    m = models.build(cfg, num_labels=3, seed=0)
    m.save_pretrained(tmp_path / "ckpt")
    loaded = models.build(config.ModelConfig(name=str(tmp_path / "ckpt")), num_labels=3, seed=1)
    assert torch.equal(FlatParams(m).get(), FlatParams(loaded).get())


def test_minilm_loads_offline_with_new_head():
    m = models.build(config.ModelConfig(name="minilm"), num_labels=3, seed=0)
    assert m.config.model_type == "bert" and m.config.num_labels == 3
    assert 22.5e6 < models.count_params(m) < 23e6


def test_freeze_reduces_what_travels():
    cfg = config.ModelConfig(name="bert-base-uncased", overrides={
        "num_hidden_layers": 4, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32})
    sizes = {}
    for how in ("none", "embeddings", "lower_half", "all_but_head"):
        m = models.build(cfg.__class__(**{**vars(cfg), "freeze": how}), num_labels=2, seed=0)
        sizes[how] = FlatParams(m).numel
    assert sizes["none"] > sizes["embeddings"] > sizes["lower_half"] > sizes["all_but_head"]
    assert sizes["all_but_head"] == 16 * 2 + 2  # the classifier only (the pooler is backbone)


def test_flat_params_round_trip_and_delta():
    m = models.build(config.ModelConfig(name="bert-base-uncased", overrides={
        "num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8}),
        num_labels=2, seed=0)
    flat = FlatParams(m)
    v = flat.get()
    flat.set(v * 2)
    assert torch.equal(flat.get(), v * 2)
    acc = torch.zeros_like(v)
    flat.add_delta_to(acc, v, 3.0)
    torch.testing.assert_close(acc, 3.0 * v)
    with pytest.raises(ValueError, match="flat vector has"):
        flat.set(v[:-1])


@pytest.mark.parametrize("name", ["albert-base-v2", "bert-base-uncased", "deberta-v3-base"])
def test_each_family_trains_one_step(name, tiny_cfg):
    from fedlib import runner

    cfg = tiny_cfg(name=name, **{
        "model.name": name, "federation.num_clients": 2, "federation.rounds": 1,
        "client.local_steps": 1, "data.max_eval_samples": 16,
        "model.overrides": {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                            "intermediate_size": 64}})
    res = runner.run(cfg, progress=False)
    assert res.state.round == 1 and res.rounds["train_loss"].notna().all()
