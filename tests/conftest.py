"""Shared fixtures: a tiny random-init model config for fast runs, and an mpiexec launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedlib.wire.comm import LAUNCH_ENV as MPI_ENV  # light: no torch, no transformers

ROOT = Path(__file__).resolve().parent.parent
os.environ.update({k: v for k, v in MPI_ENV.items() if k not in os.environ})

from fedlib import config  # noqa: E402 - after the environment: huggingface_hub reads it on import

# A 2-layer, 32-wide BERT: real architecture code, random init, milliseconds per step.
TINY_MODEL = {
    "name": "bert-base-uncased",
    "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                  "intermediate_size": 64, "vocab_size": 4096},
}


def tiny_overrides(tmp_path: Path, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "tiny", "output_dir": str(tmp_path), "threads": 1,
        "data.name": "scicite", "data.subset": "tiny", "data.max_length": 32,
        "data.max_train_samples": 192, "data.max_eval_samples": 64,
        "model.name": TINY_MODEL["name"], "model.overrides": TINY_MODEL["overrides"],
        "client.lr": 1e-3, "client.batch_size": 8, "client.local_steps": 3,
        "federation.num_clients": 6, "federation.rounds": 2,
    }
    base.update(extra)
    return base


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    def make(**extra: object) -> config.RunConfig:
        return config.load(None, tiny_overrides(tmp_path, **extra))
    return make


def mpiexec(n: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run `python args...` on n MPI ranks from the venv; raises with the output on failure."""
    exe = Path(sys.executable).with_name("mpiexec")
    cmd = [str(exe), "-n", str(n), sys.executable, *args]
    env = {**os.environ, **MPI_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_on_ranks(n: int, tmp_path: Path, name: str, **extra: object) -> Path:
    """Run the tiny config `name` (`tiny_overrides` plus `extra`) with `python -m fedlib run` on
    n MPI ranks; its run folder. The rank-independence tests compare it with a 1-process run."""
    over = tiny_overrides(tmp_path, name=name, **extra)
    mpiexec(n, ["-m", "fedlib", "run", "--quiet",
                *[a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]])
    return tmp_path / name
