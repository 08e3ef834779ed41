"""The system strategies through the exchange (LoRA / freezing, 16-bit payloads with error
feedback, the p2p star overlapped, balanced placement): the same model on one and two ranks."""

import pytest
import torch

from fedlib import runner
from tests.conftest import run_on_ranks


def _mpi_run(tmp_path, n, name, **extra):
    run_dir = run_on_ranks(n, tmp_path, name, threads=1, **extra)
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]


@pytest.mark.mpi
@pytest.mark.parametrize("extra", [
    {"model.lora_r": 4},
    {"federation.payload_dtype": "bf16", "federation.error_feedback": True, "federation.aggregation": "p2p",
     "federation.clients_per_round": 4},
    {"federation.placement": "balanced", "partition.kind": "quantity", "partition.sigma": 1.0},
    {"federation.aggregation": "p2p", "federation.overlap": True, "participation.dropout": 0.4,
     "participation.dropout_when": "mid"},
    {"federation.aggregation": "p2p", "federation.overlap": True, "federation.payload_dtype": "bf16",
     "federation.clients_per_round": 5, "federation.placement": "balanced", "partition.kind": "quantity"},
], ids=["lora", "bf16-ef-p2p", "balanced", "p2p-overlap-dropout", "p2p-overlap-bf16-uneven"])
def test_strategy_same_on_one_and_two_ranks(tmp_path, tiny_cfg, extra):
    one = runner.run(tiny_cfg(name="one", **extra), progress=False)
    two = _mpi_run(tmp_path, 2, "two", **extra)
    torch.testing.assert_close(two, one.state.weights, rtol=0, atol=1e-5)
