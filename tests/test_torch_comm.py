"""federation.backend=torch (torch.distributed on gloo here) behind the Comm interface: its
primitives, and whole runs equal to the MPI backend and to one process, for both the
collective and the p2p star."""

import json

import pytest
import torch

from fedlib import runner
from tests.conftest import mpiexec, tiny_overrides

pytestmark = pytest.mark.mpi


def _weights(tmp_path, name, **extra):
    over = tiny_overrides(tmp_path, name=name, threads=1, **extra)
    sets = [a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    mpiexec(2, ["-m", "fedlib", "run", *sets, "--quiet"])
    return torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["weights"]


@pytest.mark.parametrize("aggregation", ["collective", "p2p"])
def test_torch_backend_equals_mpi_and_one_process(tmp_path, tiny_cfg, aggregation):
    extra = {"federation.num_clients": 5, "federation.aggregation": aggregation,
             "strategy.algorithm": "fedadam", "strategy.server_lr": 0.01}
    one = runner.run(tiny_cfg(name="one", **extra), progress=False).state.weights
    mpi = _weights(tmp_path, "mpi", **extra)
    gloo = _weights(tmp_path, "gloo", **extra, **{"federation.backend": "torch"})
    torch.testing.assert_close(gloo, mpi, rtol=0, atol=1e-5)
    torch.testing.assert_close(gloo, one, rtol=0, atol=1e-5)
    assert not torch.equal(one, runner.Run.build(tiny_cfg(), runner.make_comm("local")).flat.get())


def test_torch_comm_primitives_chunked():
    prog = (
        "import torch; from fedlib.wire.torch_comm import TorchComm\n"
        "c = TorchComm(chunk_bytes=12)\n"
        "assert (c.size, c.backend) == (2, 'gloo'), (c.size, c.backend)\n"
        "b = torch.arange(10, dtype=torch.float32) * (c.rank + 1)\n"
        "c.allreduce(b); assert torch.equal(b, torch.arange(10, dtype=torch.float32) * 3), b\n"
        "w = torch.arange(7, dtype=torch.float64) if c.rank == 0 else torch.zeros(7, dtype=torch.float64)\n"
        "c.broadcast(w); assert torch.equal(w, torch.arange(7, dtype=torch.float64)), w\n"
        "m = torch.arange(9, dtype=torch.int16)\n"
        "if c.rank == 1: c.send(m * 2, dest=0, tag=5)\n"
        "else:\n"
        "    r = torch.zeros(9, dtype=torch.int16); c.recv(r, source=1, tag=5)\n"
        "    assert torch.equal(r, m * 2), r\n"
        "assert c.allgather(c.rank) == [0, 1]\n"
        "assert c.bcast_obj({'x': c.rank}) == {'x': 0}\n"
        "c.barrier(); assert c.copy_s == 0.0 and c.bytes_sent > 0\n"
        "c.close()\n"
    )
    mpiexec(2, ["-c", prog])


def test_torch_comm_close_frees_the_group():
    """close() must free the process group, or gloo's threads outlive it into interpreter
    finalization and abort the rank at exit (a flaky SIGABRT, ~1 run in 10 here). A library
    importing torch.distributed.nn after the group exists must not pin it."""
    prog = (
        "import sys, torch.distributed as dist; from fedlib.wire.torch_comm import TorchComm\n"
        "c = TorchComm(); c.allgather(c.rank); pg = dist.group.WORLD\n"
        "import torch.distributed.nn  # what transformers/opacus import on their own\n"
        "c.close(); c.close()\n"
        "assert not dist.is_initialized()\n"
        "assert sys.getrefcount(pg) == 2, sys.getrefcount(pg)  # ours and the call's: nothing pins it\n"
        "del pg  # or this very reference would carry the group into finalization\n"
    )
    mpiexec(2, ["-c", prog])
