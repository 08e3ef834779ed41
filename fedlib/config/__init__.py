"""The configuration of a run: the frozen dataclass tree (`schema`) and its YAML / override
loader (`loader`). `schema` imports nothing of fedlib but its
`errors` and cross-section `rules`; `loader` walks it."""

from .errors import ConfigError
from .loader import describe, dump, from_dict, load, parse_overrides, replace
from .schema import (
    ClientConfig,
    DataConfig,
    FederationConfig,
    ModelConfig,
    ParticipationConfig,
    PartitionConfig,
    PrivacyConfig,
    RunConfig,
    StrategyConfig,
)

__all__ = [
    "ClientConfig", "ConfigError", "DataConfig", "FederationConfig", "ModelConfig",
    "ParticipationConfig", "PartitionConfig", "PrivacyConfig", "RunConfig", "StrategyConfig",
    "describe", "dump", "from_dict", "load", "parse_overrides", "replace",
]
