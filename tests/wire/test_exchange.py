"""The system strategies through the exchange (LoRA / freezing, 16-bit payloads with error
feedback, the p2p star overlapped, balanced placement): the same model on one and two ranks."""

import pytest
import torch

from fedlib import runner

STRATEGIES = {
    "lora": {"model.lora_r": 4},
    "bf16-ef-p2p": {"federation.payload_dtype": "bf16", "federation.error_feedback": True,
                    "federation.aggregation": "p2p", "federation.clients_per_round": 4},
    "balanced": {"federation.placement": "balanced", "partition.kind": "quantity", "partition.sigma": 1.0},
    "p2p-overlap-dropout": {"federation.aggregation": "p2p", "federation.overlap": True,
                            "participation.dropout": 0.4, "participation.dropout_when": "mid"},
    "p2p-overlap-bf16-uneven": {"federation.aggregation": "p2p", "federation.overlap": True,
                                "federation.payload_dtype": "bf16", "federation.clients_per_round": 5,
                                "federation.placement": "balanced", "partition.kind": "quantity"},
}


@pytest.mark.mpi
@pytest.mark.parametrize("extra", [pytest.param(e, id=k, marks=pytest.mark.two_ranks(two=e))
                                   for k, e in STRATEGIES.items()])
def test_strategy_same_on_one_and_two_ranks(tiny_cfg, two_ranks, extra):
    one = runner.run(tiny_cfg(name="one", **extra), progress=False)
    two = torch.load(two_ranks("two") / "checkpoint.pt", weights_only=True)["weights"]
    torch.testing.assert_close(two, one.state.weights, rtol=0, atol=1e-5)
