"""One frozen configuration tree for a federated run.

Every knob lives in one of the section dataclasses below. The loader is generic: it walks
the dataclass fields and their type hints, so a new section or key only needs a field here.
Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the dotted
key and, when the value came from a YAML file, the file and line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (and file:line when known)."""


def _require(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")


@dataclass(frozen=True)
class DataConfig:
    """Which text-classification set, and how much of it."""

    name: str = "scicite"  # folder under data/ or ../shared/data/, a path, or a HF dataset id
    subset: Literal["tiny", "full"] = "tiny"  # tiny = the 2,000/500/500 slice when the set has one
    max_length: int = 128  # tokens per example (batches are cut to their longest example)
    max_train_samples: int | None = None  # use the first N training examples
    max_eval_samples: int | None = None  # use the first N evaluation examples
    eval_split: Literal["dev", "test"] = "test"  # split scored by evaluation

    def __post_init__(self) -> None:
        _require(self.max_length >= 8, "data.max_length", "must be >= 8")
        for k in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, k)
            _require(v is None or v >= 1, f"data.{k}", "must be >= 1 or null")


@dataclass(frozen=True)
class ModelConfig:
    """A sequence classifier: `minilm`, a preset name, a local checkpoint dir or a hub id."""

    name: str = "minilm"  # minilm, a preset (see README), a checkpoint dir or hub id
    pretrained: bool = True  # presets are always random-init (for time/bytes measurements)
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {num_hidden_layers: 2}
    freeze: Literal["none", "embeddings", "lower_half", "all_but_head"] = "none"  # frozen: not sent
    lora_r: int = 0  # LoRA rank (peft); 0 = off. Only adapters + classifier train and travel
    lora_alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None  # module names; null = peft's default for the family

    def __post_init__(self) -> None:
        _require(self.lora_r >= 0, "model.lora_r", "must be >= 0")
        _require(not (self.lora_r and self.freeze != "none"), "model.freeze",
                 "LoRA already freezes the backbone; leave model.freeze at none when model.lora_r > 0")
        _require(0 <= self.lora_dropout < 1, "model.lora_dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class ClientConfig:
    """Local training on one client."""

    optimizer: Literal["adamw", "sgd"] = "adamw"  # client optimizer, new each round
    lr: float = 5e-5  # client learning rate
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD momentum (client)
    batch_size: int = 16
    local_epochs: int = 1  # passes over the client shard per round
    local_steps: int | None = None  # when set, overrides local_epochs
    max_grad_norm: float | None = 1.0  # gradient clipping per step; null = off
    mu: float = 0.0  # FedProx proximal weight; > 0 adds mu/2 * ||w - w_global||^2

    def __post_init__(self) -> None:
        _require(self.lr > 0, "client.lr", f"must be > 0, got {self.lr}")
        _require(self.batch_size >= 1, "client.batch_size", "must be >= 1")
        _require(self.local_epochs >= 1, "client.local_epochs", "must be >= 1")
        _require(
            self.local_steps is None or self.local_steps >= 1,
            "client.local_steps",
            "must be >= 1 or null",
        )
        _require(self.mu >= 0, "client.mu", f"must be >= 0, got {self.mu}")
        _require(self.weight_decay >= 0, "client.weight_decay", "must be >= 0")
        _require(0 <= self.momentum < 1, "client.momentum", "must be in [0, 1)")
        _require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "client.max_grad_norm",
            "must be > 0 or null",
        )


Algorithm = Literal["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm"]


@dataclass(frozen=True)
class StrategyConfig:
    """Server-side aggregation rule and its hyper-parameters (Reddi et al., 2021)."""

    algorithm: Algorithm = "fedavg"  # server rule
    server_lr: float = 1.0  # server step size (FedAvg: 1.0 = plain averaging)
    beta1: float = 0.9  # FedAdam/FedYogi first moment
    beta2: float = 0.99  # FedAdam/FedYogi second moment
    tau: float = 1e-3  # adaptivity (epsilon) of FedAdam/FedYogi/FedAdagrad
    momentum: float = 0.9  # FedAvgM server momentum

    def __post_init__(self) -> None:
        _require(self.server_lr > 0, "strategy.server_lr", f"must be > 0, got {self.server_lr}")
        _require(0 <= self.beta1 < 1, "strategy.beta1", "must be in [0, 1)")
        _require(0 <= self.beta2 < 1, "strategy.beta2", "must be in [0, 1)")
        _require(self.tau > 0, "strategy.tau", "must be > 0")
        _require(0 <= self.momentum < 1, "strategy.momentum", "must be in [0, 1)")


@dataclass(frozen=True)
class FederationConfig:
    """Who takes part, how often, and how updates travel."""

    num_clients: int = 4  # virtual clients (any number of ranks hosts them)
    rounds: int = 2  # federated rounds (total, also when resuming)
    fraction: float = 1.0  # fraction of clients sampled per round, in (0, 1]
    clients_per_round: int | None = None  # when set, overrides fraction
    aggregation: Literal["collective", "p2p"] = "collective"  # allreduce, or the rank-0 star baseline
    eval_every: int = 1  # 0 = never (timing runs); otherwise every k rounds and the last
    checkpoint_every: int = 1  # 0 = never
    chunk_mb: int = 1024  # message chunk size; MPI counts are int32, so stay < 2 GiB
    placement: Literal["round_robin", "balanced"] = "round_robin"  # balanced = LPT by local steps
    payload_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # client updates on the wire (summed in fp32)
    error_feedback: bool = False  # keep what rounding lost per client, add it to its next update

    def __post_init__(self) -> None:
        _require(self.num_clients >= 1, "federation.num_clients", "must be >= 1")
        _require(self.rounds >= 1, "federation.rounds", "must be >= 1")
        _require(
            0 < self.fraction <= 1, "federation.fraction", f"must be in (0, 1], got {self.fraction}"
        )
        c = self.clients_per_round
        _require(
            c is None or 1 <= c <= self.num_clients,
            "federation.clients_per_round",
            f"must be in [1, num_clients={self.num_clients}] or null",
        )
        _require(self.eval_every >= 0, "federation.eval_every", "must be >= 0")
        _require(self.checkpoint_every >= 0, "federation.checkpoint_every", "must be >= 0")
        _require(1 <= self.chunk_mb < 2048, "federation.chunk_mb", "must be in [1, 2047]")


@dataclass(frozen=True)
class PartitionConfig:
    """How the training set is split across clients."""

    kind: Literal["iid", "dirichlet", "quantity", "shards"] = "iid"  # label skew, size skew, k classes
    min_samples: int = 1  # every client gets at least this many training examples
    alpha: float = 0.5  # Dirichlet concentration per label (dirichlet) or per client (quantity=dirichlet)
    quantity: Literal["dirichlet", "lognormal"] = "lognormal"  # client-size law for kind=quantity
    sigma: float = 1.0  # lognormal sigma of client sizes (kind=quantity, quantity=lognormal)
    classes_per_client: int = 2  # kind=shards: classes each client holds

    def __post_init__(self) -> None:
        _require(self.min_samples >= 1, "partition.min_samples", "must be >= 1")
        _require(self.alpha > 0, "partition.alpha", f"must be > 0, got {self.alpha}")
        _require(self.sigma >= 0, "partition.sigma", f"must be >= 0, got {self.sigma}")
        _require(self.classes_per_client >= 1, "partition.classes_per_client", "must be >= 1")


@dataclass(frozen=True)
class ParticipationConfig:
    """Dropout and stragglers among the clients sampled in a round (see fedlib.participation)."""

    dropout: float = 0.0  # probability a sampled client drops out (its update is lost)
    dropout_when: Literal["before", "mid"] = "before"  # before training, or after part of its steps
    speed: Literal["constant", "lognormal", "uniform"] = "constant"  # per-client slowness factor law
    speed_sigma: float = 0.5  # speed=lognormal: factor ~ lognormal(0, sigma)
    speed_max: float = 4.0  # speed=uniform: factor ~ U[1, speed_max]
    deadline_s: float | None = None  # simulated seconds; later clients are dropped. null = wait for all
    min_clients: int = 1  # fewer surviving updates than this: the round is skipped (weights kept)

    def __post_init__(self) -> None:
        _require(0 <= self.dropout < 1, "participation.dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.speed_sigma >= 0, "participation.speed_sigma", "must be >= 0")
        _require(self.speed_max >= 1, "participation.speed_max", "must be >= 1")
        _require(self.deadline_s is None or self.deadline_s > 0, "participation.deadline_s",
                 "must be > 0 or null")
        _require(self.min_clients >= 1, "participation.min_clients", "must be >= 1")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy (see fedlib.privacy): per-sample DP-SGD or client-level DP-FedAvg."""

    mode: Literal["none", "sample", "client"] = "none"  # sample = DP-SGD (Opacus); client = DP-FedAvg
    noise_multiplier: float | None = None  # sigma; or set target_epsilon and it is derived
    target_epsilon: float | None = None  # epsilon the whole run should spend (per client for sample)
    delta: float = 1e-5
    max_grad_norm: float = 1.0  # mode=sample: per-example gradient clip
    clip: float = 1.0  # mode=client: L2 bound C on each client update
    epsilon_budget: float | None = None  # mode=client: stop before a round would exceed it
    accountant: Literal["rdp", "prv"] = "rdp"  # Opacus accountant

    def __post_init__(self) -> None:
        if self.mode == "none":
            return
        _require((self.noise_multiplier is None) != (self.target_epsilon is None), "privacy.noise_multiplier",
                 f"privacy.mode={self.mode!r} needs exactly one of noise_multiplier or target_epsilon")
        _require(self.noise_multiplier is None or self.noise_multiplier > 0, "privacy.noise_multiplier",
                 "must be > 0")
        _require(self.target_epsilon is None or self.target_epsilon > 0, "privacy.target_epsilon",
                 "must be > 0")
        _require(0 < self.delta < 1, "privacy.delta", f"must be in (0, 1), got {self.delta}")
        _require(self.max_grad_norm > 0, "privacy.max_grad_norm", "must be > 0")
        _require(self.clip > 0, "privacy.clip", "must be > 0")
        _require(self.epsilon_budget is None or self.epsilon_budget > 0, "privacy.epsilon_budget",
                 "must be > 0 or null")


@dataclass(frozen=True)
class RunConfig:
    """The whole run. `name` names the folder under `output_dir`."""

    name: str = "run"  # run folder under output_dir
    seed: int = 0  # every random draw derives from (seed, round, client)
    output_dir: str = "outputs"  # where run folders go
    threads: int | None = None  # torch threads per rank; null = cores / local ranks under MPI
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    participation: ParticipationConfig = field(default_factory=ParticipationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, "name", "must be a non-empty folder name")
        _require(self.threads is None or self.threads >= 1, "threads", "must be >= 1 or null")
        _require(
            self.partition.min_samples * self.federation.num_clients >= 1,
            "partition.min_samples",
            "impossible",
        )
        per_round = self.clients_per_round
        _require(self.participation.min_clients <= per_round, "participation.min_clients",
                 f"is {self.participation.min_clients} but only {per_round} clients are sampled per round")
        _require(not (self.privacy.mode == "sample" and self.client.mu > 0), "client.mu",
                 "FedProx's penalty is not per-example, so it cannot be combined with privacy.mode=sample")

    @property
    def clients_per_round(self) -> int:
        """Clients sampled each round (before dropout)."""
        fed = self.federation
        return min(fed.num_clients, fed.clients_per_round or max(1, round(fed.fraction * fed.num_clients)))

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        """Dotted-key overrides, e.g. ``cfg.replace(**{"federation.rounds": 3})``."""
        return from_dict(_merge(self.to_dict(), _nest(changes)))


# ---------------------------------------------------------------------------- loading


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: '{p}' is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "overrides":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " / ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        _require(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            _require(type(None) in args, key, "must not be null")
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is dict or tp is dict:
        _require(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        _require(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return tuple(value) if inner is Any else tuple(_coerce(v, inner, key) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        _require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, got {value!r}",
        )
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        _require(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"must be a number, got {value!r}",
        )
        return float(value)
    if tp is str:
        _require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix or "config"
    if data is None:
        data = {}
    _require(isinstance(data, dict), where, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            near = [n for n in sorted(names) if n[:3] == str(k)[:3]]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{prefix + '.' if prefix else ''}{k}: unknown key{hint}; "
                f"allowed: {', '.join(sorted(names))}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> RunConfig:
    return _build(RunConfig, data, "")


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line in the YAML text, for error messages."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return lines


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """`key=value` strings (value parsed as YAML) -> flat dotted dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else None
    return out


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML file (optional) and apply dotted overrides (`--set` or papermill values)."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        lines = _key_lines(text)
    over = _nest(overrides or {})
    try:
        return from_dict(_merge(data, over))
    except ConfigError as e:
        key = str(e).split(":", 1)[0]
        if key in lines and key not in (overrides or {}):
            raise ConfigError(f"{path}:{lines[key]}: {e}") from None
        raise


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    return x


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing `# comment` in the class source: the keys' help text."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def describe() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every config key; the README table comes from here."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        helps = _comments(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append((key, _type_name(tp), repr(default), helps.get(f.name, "")))

    walk(RunConfig, "")
    return rows
