"""One frozen configuration tree for a federated run.

Every knob lives in one of the section dataclasses below. The loader (fedlib.config.loader)
is generic: it walks the dataclass fields and their type hints, so a new
section or key only needs a field here.
Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the dotted
key and, when the value came from a YAML file, the file and line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import rules
from .errors import ConfigError as ConfigError  # the config package's error, re-exported
from .errors import _require


@dataclass(frozen=True)
class DataConfig:
    """Which text-classification set, and how much of it."""

    name: str = "scicite"  # folder under data/ or ../shared/data/, a path, or a HF dataset id
    subset: Literal["tiny", "full"] = "tiny"  # tiny = the 2,000/500/500 slice when the set has one
    max_length: int = 128  # tokens per example (batches are cut to their longest example)
    max_train_samples: int | None = None  # use the first N training examples
    max_eval_samples: int | None = None  # use the first N evaluation examples
    eval_split: Literal["dev", "test"] = "test"  # split scored by evaluation
    config: str | None = None  # HF dataset configuration name (load_dataset(name, config)), e.g. a GLUE task
    text_column: str = "text"  # column (JSONL key) holding the text
    label_column: str = "label"  # column (JSONL key) holding the label: ClassLabel, int or string

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
    freeze: Literal["none", "embeddings", "lower_half", "all_but_head"] = "none"  # alias of freeze_layers
    freeze_layers: int | Literal["all"] | None = None  # embeddings + first k layers frozen; all = head only
    cache_features: bool = False  # run the frozen part once, cache it under $FEDLIB_CACHE
    cache_dtype: Literal["fp32", "fp16"] = "fp16"  # cached hidden states; fp32 = exact
    pooling: Literal["cls", "mean"] = "cls"  # CLS pooler (HF default) or masked mean
    lora_r: int = 0  # LoRA rank (peft); 0 = off. Only adapters + classifier train and travel
    lora_alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None  # module names; null = peft's default for the family

    def __post_init__(self) -> None:
        _require(self.lora_r >= 0, "model.lora_r", "must be >= 0")
        _require(not (self.lora_r and self.freeze != "none"), "model.freeze",
                 "LoRA already freezes the backbone; leave model.freeze at none when model.lora_r > 0")
        _require(0 <= self.lora_dropout < 1, "model.lora_dropout", "must be in [0, 1)")
        k = self.freeze_layers
        _require(k is None or k == "all" or k >= 0, "model.freeze_layers",
                 f"must be >= 0, all or null, got {k!r}")
        _require(k is None or self.freeze == "none", "model.freeze_layers",
                 f"set one of model.freeze ({self.freeze!r}) or model.freeze_layers ({k!r})")
        _require(not (self.lora_r and k is not None), "model.freeze_layers",
                 "LoRA already freezes the backbone; leave model.freeze_layers null when model.lora_r > 0")
        _require(not (self.lora_r and self.pooling == "mean"), "model.pooling",
                 "mean pooling wraps the HF classifier, which peft's LoRA cannot; use pooling: cls with LoRA")
        _require(not self.cache_features or self.frozen is not None, "model.cache_features",
                 "caches the frozen part; set model.freeze_layers (or model.freeze)")

    @property
    def frozen(self) -> int | Literal["all", "half"] | None:
        """Frozen layers from either key: None, k (embeddings + k layers), "half" or "all"."""
        alias = {"none": None, "embeddings": 0, "lower_half": "half", "all_but_head": "all"}
        return self.freeze_layers if self.freeze_layers is not None else alias[self.freeze]


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
    mu: float = 0.0  # FedProx proximal weight mu/2 * ||w - w_global||^2; fedprox needs > 0, fedavg 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast (fp16: + GradScaler); weights fp32

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
    beta1: float = 0.9  # first-moment decay of FedAdam/FedYogi/FedAdagrad
    beta2: float = 0.99  # second-moment decay of FedAdam/FedYogi
    tau: float = 1e-3  # adaptivity of FedAdam/FedYogi/FedAdagrad; v starts at tau^2
    bias_correction: bool = False  # fedadam/fedyogi: Adam's bias-corrected step; false = Reddi et al. Alg. 2
    momentum: float = 0.9  # FedAvgM server momentum
    staleness: Literal["constant", "polynomial", "hinge"] = "polynomial"  # async: s(tau) weighs stale updates
    staleness_a: float = 0.5  # polynomial: s = (tau+1)^-a; hinge: s = 1/(a(tau-b)+1) past b
    staleness_b: float = 4.0  # hinge: versions of staleness weighted fully
    async_alpha: float = 0.6  # fedasync: mixing weight alpha, x <- (1 - alpha*s)x + alpha*s*x_client

    def __post_init__(self) -> None:
        _require(self.server_lr > 0, "strategy.server_lr", f"must be > 0, got {self.server_lr}")
        _require(0 <= self.beta1 < 1, "strategy.beta1", "must be in [0, 1)")
        _require(0 <= self.beta2 < 1, "strategy.beta2", "must be in [0, 1)")
        _require(self.tau > 0, "strategy.tau", "must be > 0")
        _require(0 <= self.momentum < 1, "strategy.momentum", "must be in [0, 1)")
        _require(self.staleness_a >= 0, "strategy.staleness_a", f"must be >= 0, got {self.staleness_a}")
        _require(self.staleness_b >= 0, "strategy.staleness_b", f"must be >= 0, got {self.staleness_b}")
        _require(0 < self.async_alpha <= 1, "strategy.async_alpha",
                 f"must be in (0, 1], got {self.async_alpha}")
        _require(not self.bias_correction or self.algorithm in ("fedadam", "fedyogi"),
                 "strategy.bias_correction", f"applies to fedadam and fedyogi, not {self.algorithm}")


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
    export: bool = True  # at the end, the global model as a Hugging Face folder <run>/model (cls pooling)
    chunk_mb: int = 1024  # message chunk size; MPI counts are int32, so stay < 2 GiB
    placement: Literal["round_robin", "balanced"] = "round_robin"  # balanced = LPT on estimated work
    payload_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # client updates on the wire (summed in fp32)
    error_feedback: bool = False  # keep what rounding lost per client, add it to its next update
    overlap: bool = False  # p2p: send/receive updates on a background thread while the next client trains
    backend: Literal["mpi", "torch"] = "mpi"  # comm: mpi4py, or torch.distributed (gloo on CPU, NCCL on CUDA)
    timeout_s: float = 1800.0  # backend torch: seconds a collective may wait (a node builds its caches)
    mode: Literal["sync", "fedbuff", "fedasync"] = "sync"  # sync rounds, or asynchronous aggregation
    concurrency: int | None = None  # async: clients training at once; null = clients per round
    buffer_size: int | None = None  # fedbuff: K arrivals per server step; null = concurrency
    clock: Literal["virtual", "wall"] = "virtual"  # async: simulated time (deterministic) or real, over MPI
    resume: Literal["never", "auto"] = "never"  # auto: continue from the run's checkpoint.pt if there is one

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
        _require(self.timeout_s > 0, "federation.timeout_s", f"must be > 0, got {self.timeout_s}")
        _require(not self.overlap or self.aggregation == "p2p", "federation.overlap",
                 "overlaps the p2p star's per-client messages with training; the collective sends "
                 "once per round after the last client, so set federation.aggregation: p2p or "
                 "leave overlap false")
        for k in ("concurrency", "buffer_size"):
            v = getattr(self, k)
            _require(v is None or v >= 1, f"federation.{k}", "must be >= 1 or null")


PartitionKind = Literal["iid", "dirichlet", "dirichlet_mix", "quantity", "shards"]


@dataclass(frozen=True)
class PartitionConfig:
    """How the training set is split across clients."""

    kind: PartitionKind = "iid"  # iid; label skew (dirichlet, dirichlet_mix); size skew; k classes (shards)
    min_samples: int = 1  # every client gets at least this many training examples (dirichlet: redraws)
    alpha: float = 0.5  # Dirichlet concentration: class split (dirichlet), label mix (dirichlet_mix), sizes
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
    """Dropout and stragglers among the clients sampled in a round (see fedlib.sim.participation)."""

    dropout: float = 0.0  # probability a sampled client drops out (its update is lost)
    dropout_when: Literal["before", "mid"] = "before"  # before training, or after part of its steps
    speed: Literal["constant", "lognormal", "uniform"] = "constant"  # per-client slowness factor law
    speed_sigma: float = 0.5  # speed=lognormal: factor ~ lognormal(0, sigma)
    speed_max: float = 4.0  # speed=uniform: factor ~ U[1, speed_max]
    deadline_s: float | None = None  # simulated seconds; later clients are dropped. null = wait for all
    deadline_steps: float | None = None  # the same in virtual time (speed x local steps): deterministic
    min_clients: int = 1  # fewer surviving updates than this: the round is skipped (weights kept)
    emulate_speed: bool = False  # clock=wall: a client of speed f sleeps (f-1) x its compute on its rank

    def __post_init__(self) -> None:
        _require(0 <= self.dropout < 1, "participation.dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.speed_sigma >= 0, "participation.speed_sigma", "must be >= 0")
        _require(self.speed_max >= 1, "participation.speed_max", "must be >= 1")
        _require(self.deadline_s is None or self.deadline_s > 0, "participation.deadline_s",
                 "must be > 0 or null")
        _require(self.deadline_steps is None or self.deadline_steps > 0, "participation.deadline_steps",
                 "must be > 0 or null")
        _require(self.deadline_s is None or self.deadline_steps is None, "participation.deadline_steps",
                 "give one deadline: deadline_s (measured seconds x speed) or deadline_steps "
                 "(speed x local steps)")
        _require(self.min_clients >= 1, "participation.min_clients", "must be >= 1")


# privacy keys with a default that only a DP mode reads (privacy.mode: none refuses any other value)
IDLE_WITHOUT_DP = ("delta", "max_grad_norm", "clip", "accountant", "secure_noise")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy (see fedlib.privacy): per-sample DP-SGD or client-level DP-FedAvg."""

    mode: Literal["none", "sample", "client"] = "none"  # sample = DP-SGD (Opacus); client = DP-FedAvg
    noise_multiplier: float | None = None  # sigma; or set target_epsilon and it is derived
    target_epsilon: float | None = None  # epsilon the whole run should spend (per client for sample)
    delta: float = 1e-5  # mode=client: must be <= 1/(10 * federation.num_clients)
    max_grad_norm: float = 1.0  # mode=sample: per-example gradient clip
    clip: float = 1.0  # mode=client: L2 bound C on each client update
    epsilon_budget: float | None = None  # stop before a round would exceed it (sample: any client's)
    accountant: Literal["rdp", "prv"] = "rdp"  # Opacus accountant
    secure_noise: bool = False  # DP noise from OS entropy (not reproducible); false = seeded simulation

    def __post_init__(self) -> None:
        if self.mode == "none":  # a DP setting without DP would run without privacy, silently
            for k in ("noise_multiplier", "target_epsilon", "epsilon_budget"):
                _require(getattr(self, k) is None, f"privacy.{k}",
                         "is set but privacy.mode is none (no DP); set privacy.mode: client or sample, "
                         "or remove the key")
            for f in dataclasses.fields(self):  # the rest: set to anything but its default
                value = getattr(self, f.name)
                _require(f.name not in IDLE_WITHOUT_DP or value == f.default, f"privacy.{f.name}",
                         f"is {value!r} but privacy.mode is none (no DP), so it would change nothing; set "
                         "privacy.mode: client or sample, or remove the key")
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
    device: str = "auto"  # auto (local rank's GPU, else CPU) | cpu | cuda | cuda:N | xpu | xpu:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    participation: ParticipationConfig = field(default_factory=ParticipationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def __post_init__(self) -> None:
        folder = bool(self.name) and self.name not in (".", "..") and not any(c in self.name for c in "/\\\0")
        _require(folder, "name", "must be a non-empty folder name inside output_dir "
                 f"(no '/', '\\', '.' or '..'), got {self.name!r}")
        _require(0 <= self.seed < 2**64, "seed", f"must be in [0, 2**64) (numpy SeedSequence and torch "
                 f"seeds are unsigned 64-bit), got {self.seed}")
        _require(self.threads is None or self.threads >= 1, "threads", "must be >= 1 or null")
        _require(bool(re.fullmatch(r"auto|cpu|(cuda|xpu)(:\d+)?", self.device)), "device",
                 f"must be auto, cpu, cuda, cuda:N, xpu or xpu:N, got {self.device!r}")
        _require(not (self.privacy.mode == "sample" and self.client.precision != "fp32"), "client.precision",
                 "DP-SGD clips and noises fp32 per-sample gradients; use client.precision: fp32 with "
                 "privacy.mode=sample")
        _require(
            self.partition.min_samples * self.federation.num_clients >= 1,
            "partition.min_samples",
            "impossible",
        )
        per_round = self.clients_per_round
        _require(self.participation.min_clients <= per_round, "participation.min_clients",
                 f"is {self.participation.min_clients} but only {per_round} clients are sampled per round")
        alg = self.strategy.algorithm
        _require(alg != "fedprox" or self.client.mu > 0, "client.mu",
                 "strategy.algorithm=fedprox needs client.mu > 0 (with mu = 0 it is FedAvg)")
        _require(alg != "fedavg" or self.client.mu == 0, "client.mu",
                 f"is {self.client.mu}: a proximal term makes this FedProx; set strategy.algorithm: "
                 "fedprox (or client.mu: 0)")
        _require(not (self.privacy.mode == "client" and self.participation.min_clients > 1),
                 "participation.min_clients", "privacy.mode=client releases every round's noised sum "
                 "(skipping a round on the client count would leak it); leave min_clients at 1")
        rules.check_client_dp(self)
        _require(not (self.privacy.mode == "sample" and self.client.mu > 0), "client.mu",
                 "FedProx's penalty is not per-example, so it cannot be combined with privacy.mode=sample")

        if self.federation.mode != "sync":
            rules.check_async(self)
        rules.check_wall(self)

    @property
    def clients_per_round(self) -> int:
        """Clients sampled each round (before dropout)."""
        fed = self.federation
        return min(fed.num_clients, fed.clients_per_round or max(1, round(fed.fraction * fed.num_clients)))

    @property
    def concurrency(self) -> int:
        """Clients training at once in an async mode (federation.concurrency, else per round)."""
        return self.federation.concurrency or self.clients_per_round

    @property
    def buffer_size(self) -> int:
        """Arrivals per server step: K for fedbuff (null = concurrency), 1 for fedasync."""
        if self.federation.mode == "fedasync":
            return 1
        return self.federation.buffer_size or self.concurrency

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
