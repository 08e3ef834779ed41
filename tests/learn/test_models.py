import pytest
import torch

from fedlib import config, runner
from fedlib.learn import models
from fedlib.wire.flat import FlatParams


def count_params(model: torch.nn.Module) -> int:
    """Every parameter (was fedlib.learn.models.count_params: only this test used it)."""
    return sum(p.numel() for p in model.parameters())


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
    assert 22.5e6 < count_params(m) < 23e6


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


# ---- model.name and model.overrides: one line naming the key, before transformers is reached ----

SMALL = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("bert-base-uncased", {"num_hidden_layer": 1, **SMALL},
     "model.overrides.num_hidden_layer: not a key of BertConfig (did you mean 'num_hidden_layers'?)"),
    ("minilm", {"hiden_dropout_prob": 0.2},  # a from_pretrained kwarg: a TypeError from the model class
     "model.overrides.hiden_dropout_prob: not a key of BertConfig (did you mean 'hidden_dropout_prob'?)"),
    ("deberta-v3-base", {"num_hidden_layers": 1, "colour": "red", **SMALL},
     "model.overrides.colour: not a key of DebertaV2Config"),
    ("bert-base-uncased", {"num_hidden_layers": -1, **SMALL},  # built a model with no encoder
     "model.overrides.num_hidden_layers: must be an integer >= 1, got -1"),
    ("bert-base-uncased", {"num_hidden_layers": 0, **SMALL},
     "model.overrides.num_hidden_layers: must be an integer >= 1, got 0"),
    ("albert-base-v2", {"num_hidden_layers": 1, **SMALL, "hidden_size": 2.5},
     "model.overrides.hidden_size: must be an integer >= 1, got 2.5"),
])
def test_bad_overrides_are_refused_naming_the_key(name, overrides, message):
    cfg = config.ModelConfig(name=name, overrides=overrides)
    with pytest.raises(config.ConfigError) as e:
        models.build(cfg, num_labels=2, seed=0)
    assert str(e.value) == message


def test_config_only_keys_are_accepted_as_overrides():
    m = models.build(config.ModelConfig(name="bert-base-uncased", overrides={
        "num_hidden_layers": 1, "attn_implementation": "eager", "hidden_dropout_prob": 0.0, **SMALL}),
        num_labels=2, seed=0)
    assert m.config.num_hidden_layers == 1 and m.config.hidden_dropout_prob == 0.0


CHOICES = ("albert, albert-base, albert-base-v2, albert-large-v2, bert, bert-base, bert-base-uncased, "
           "bert-large-uncased, deberta, deberta-base, deberta-v3-base, deberta-v3-large, minilm")


def test_model_name_that_is_nothing_loadable_is_one_line(tmp_path):
    for name, message in [
        ("bad name!!", f"model.name='bad name!!': not a preset ({CHOICES}), not a folder and not a "
                       "valid Hugging Face hub id (org/name)"),
        (str(tmp_path / "nope" / "ckpt"), f"model.name='{tmp_path}/nope/ckpt': no such folder"),
        (str(tmp_path), f"model.name='{tmp_path}': the folder has no config.json, so it is not a saved "
                        "transformers model (save_pretrained writes one)"),
    ]:
        with pytest.raises(config.ConfigError) as e:
            models.load_tokenizer(config.ModelConfig(name=name))
        assert str(e.value) == message


def test_offline_hub_id_not_in_the_cache_is_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(config.ConfigError) as e:
        models.build(config.ModelConfig(name="bert-bsae"), num_labels=2, seed=0)
    assert str(e.value) == (
        f"model.name='bert-bsae': not a preset or a folder, and as a hub id not in the Hugging Face "
        f"cache {tmp_path}; HF_HUB_OFFLINE=1 forbids downloading it (download it where the network is "
        "reachable) (did you mean 'bert-base'?)")


def test_a_hub_id_transformers_cannot_fetch_is_one_line(monkeypatch):
    """Online, a missing repo or an unreachable hub surfaces as transformers' multi-line OSError."""
    from huggingface_hub import constants

    def unreachable(*_, **__):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your "
                      "internet connection or see how to run the library in offline mode.")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", unreachable)
    monkeypatch.setattr(models.AutoConfig, "from_pretrained", unreachable)
    for load in (models.load_tokenizer, lambda c: models.build(c, num_labels=2, seed=0)):
        with pytest.raises(config.ConfigError) as e:
            load(config.ModelConfig(name="someorg/some-model"))
        assert str(e.value) == ("model.name='someorg/some-model': could not be loaded (OSError: We couldn't "
                                "connect to 'https://huggingface.co' to load the files.)")


def test_a_run_resolves_the_model_name_once(tiny_cfg, monkeypatch):
    """Context.build resolves model.name once and hands the spec to the tokenizer, the data's
    vocabulary folding and the model (it resolved it three times); a mean-pooled model is
    models.MeanPooled."""
    calls = []
    real = models.locate
    monkeypatch.setattr(models, "locate", lambda name: calls.append(name) or real(name))
    ctx = runner.Context.build(tiny_cfg(**{"model.pooling": "mean"}), runner.make_comm("local"))
    assert calls == ["bert-base-uncased"] and ctx.spec == real("bert-base-uncased")
    assert isinstance(ctx.model, models.MeanPooled)


def test_lora_payload_fraction_on_bert_base(tiny_cfg):
    ctx = runner.Context.build(tiny_cfg(**{"model.overrides": {}, "model.lora_r": 8}),
                               runner.make_comm("local"))
    total = sum(p.numel() for p in ctx.model.parameters())
    assert total > 100e6 and ctx.flat.numel / total < 0.01
