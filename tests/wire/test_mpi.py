"""The same config on 1, 2 and 4 MPI ranks (and in p2p mode) gives the same model."""


import pytest
import torch

from fedlib import runner
from tests.conftest import mpiexec, run_on_ranks

pytestmark = pytest.mark.mpi


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]


FIVE = {"federation.num_clients": 5}
FEDADAM = {"strategy.algorithm": "fedadam", "strategy.server_lr": 0.01}


@pytest.mark.two_ranks(mpi2=FIVE)
def test_mpi_ranks_equal_single_process(tmp_path, tiny_cfg, two_ranks):
    ref = runner.run(tiny_cfg(name="one", **{"federation.num_clients": 5}), progress=False)
    for w in (_weights(two_ranks("mpi2")), _weights(run_on_ranks(4, tmp_path, "mpi4", **FIVE))):
        torch.testing.assert_close(w, ref.state.weights, rtol=0, atol=1e-5)


CACHED = {**FIVE, "model.freeze_layers": 1, "model.cache_features": True}


@pytest.mark.two_ranks(cached=CACHED)
def test_cached_features_on_two_ranks_equal_single_process(tiny_cfg, two_ranks):
    """Rank 0 builds the feature cache with the node's idle cores while rank 1 waits at an idle
    barrier (store.build_once, devices.builder_threads); both then train on it: the same model."""
    ref = runner.run(tiny_cfg(name="one-cached", **CACHED), progress=False)
    torch.testing.assert_close(_weights(two_ranks("cached")), ref.state.weights, rtol=0, atol=1e-5)


@pytest.mark.two_ranks(coll=FEDADAM, p2p={**FEDADAM, "federation.aggregation": "p2p"})
def test_p2p_equals_collective(two_ranks):
    a = _weights(two_ranks("coll"))
    b = _weights(two_ranks("p2p"))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_mpi_chunked_allreduce(tmp_path):
    prog = (
        "import torch; from fedlib.wire.comm import MPIComm\n"
        "c = MPIComm(chunk_bytes=12)\n"
        "b = torch.arange(10, dtype=torch.float32) * (c.rank + 1)\n"
        "c.allreduce(b)\n"
        "assert torch.equal(b, torch.arange(10, dtype=torch.float32) * 3), b\n"
        "w = torch.arange(7, dtype=torch.float64) if c.rank == 0 else torch.zeros(7, dtype=torch.float64)\n"
        "c.broadcast(w); assert torch.equal(w, torch.arange(7, dtype=torch.float64)), w\n"
        "assert c.copy_s == 0.0  # CPU tensors go as numpy views: nothing staged\n"
    )
    mpiexec(2, ["-c", prog])
