"""The one error type of a bad configuration, and the check that raises it naming the key."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (and file:line when known)."""


def _require(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")
