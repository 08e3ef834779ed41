"""fedlib: federated fine-tuning of transformer text classifiers on HPC systems (MPI)."""

from .config import ConfigError, RunConfig, load
from .runner import Result, run

__all__ = ["ConfigError", "Result", "RunConfig", "load", "run"]
__version__ = "0.1.0"
