"""fedlib: federated fine-tuning of transformer text classifiers on HPC systems (MPI).

The top-level names are imported lazily, so `import fedlib.wire.comm` stays light (no torch or
transformers) — launchers and test fixtures rely on that.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "Result", "RunConfig", "load", "run"]
__version__ = "0.1.0"

_LAZY = {"ConfigError": "config", "RunConfig": "config", "load": "config", "Result": "runner",
         "run": "runner"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fedlib' has no attribute {name!r}")
