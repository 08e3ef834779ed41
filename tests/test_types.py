"""The type checker over fedlib/ (mypy, configured in pyproject.toml, also in `make lint`): it
passes, and it still sees what it is there for — a call to a method `RunConfig` does not have
(`cfg.replace(...)`, which crashed the full profile's notebook 06 after hours of sweeps)."""

import subprocess
import sys

from fedlib.learn.data import REPO_ROOT

CANARY = '''
from fedlib import config


def steps(cfg: config.RunConfig) -> config.RunConfig:
    return cfg.replace(name="x")
'''


def test_mypy_passes_on_fedlib_and_catches_a_missing_method(tmp_path):
    """One mypy run (cache in .mypy_cache: seconds when warm, ~15 s cold here) over fedlib/ plus
    a canary file: exactly one error, the canary's."""
    canary = tmp_path / "canary.py"
    canary.write_text(CANARY)
    proc = subprocess.run([sys.executable, "-m", "mypy", "fedlib", str(canary)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, proc.stdout + proc.stderr
    assert "canary.py:6" in errors[0] and '"RunConfig" has no attribute "replace"' in errors[0]
