"""federation.backend=torch (torch.distributed on gloo here) behind the Comm interface: its
primitives, and whole runs equal to the MPI backend and to one process, for both the
collective and the p2p star."""


import socket

import pytest
import torch

from fedlib import runner
from tests.conftest import mpiexec

pytestmark = pytest.mark.mpi


def _extra(aggregation):
    return {"federation.num_clients": 5, "federation.aggregation": aggregation,
            "strategy.algorithm": "fedadam", "strategy.server_lr": 0.01}


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]


@pytest.mark.parametrize("aggregation", [
    pytest.param(a, marks=pytest.mark.two_ranks(mpi=_extra(a),
                                                 gloo={**_extra(a), "federation.backend": "torch"}))
    for a in ("collective", "p2p")])
def test_torch_backend_equals_mpi_and_one_process(tiny_cfg, two_ranks, aggregation):
    extra = _extra(aggregation)
    one = runner.run(tiny_cfg(name="one", **extra), progress=False).state.weights
    mpi = _weights(two_ranks("mpi"))
    gloo = _weights(two_ranks("gloo"))
    torch.testing.assert_close(gloo, mpi, rtol=0, atol=1e-5)
    torch.testing.assert_close(gloo, one, rtol=0, atol=1e-5)
    assert not torch.equal(one, runner.Context.build(tiny_cfg(), runner.make_comm("local")).flat.get())


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


# --- on GPUs, simulated: torch.distributed and torch.cuda stubbed (no GPU here) ---------------

class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))


def _nccl_stubs(monkeypatch, gpus):
    from fedlib.wire import torch_comm

    init = _Recorder()
    monkeypatch.setattr(torch_comm.dist, "init_process_group", init)
    monkeypatch.setattr(torch_comm.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch_comm.atexit, "register", lambda fn: None)
    monkeypatch.setattr(torch_comm, "_world", lambda: (1, 4, None))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(torch_comm, "gpu_identity", lambda dev: f"GPU-of-{dev}")
    for var in ("OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "PALS_LOCAL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    return torch_comm, init


def _one_node(monkeypatch, ranks: int, rank: int) -> None:
    """Open MPI's variables for `ranks` ranks on one node, as seen by `rank`."""
    for var, value in (("LOCAL_SIZE", ranks), ("LOCAL_RANK", rank), ("SIZE", ranks), ("RANK", rank)):
        monkeypatch.setenv(f"OMPI_COMM_WORLD_{var}", str(value))


def test_nccl_group_gets_the_rank_gpu_and_the_configured_timeout(monkeypatch):
    from datetime import timedelta

    torch_comm, init = _nccl_stubs(monkeypatch, gpus=4)
    _one_node(monkeypatch, ranks=4, rank=1)
    torch_comm.TorchComm(device=torch.device("cuda:1"), timeout_s=42.5)
    (args, kwargs), = init.calls
    assert args == ("nccl",)
    assert kwargs["timeout"] == timedelta(seconds=42.5)
    assert kwargs["device_id"] == torch.device("cuda", 1)  # eager init, one communicator


class _GatherMPI:
    """mpi4py's COMM_WORLD as one rank sees it: allgather answers every rank's (host, GPU)."""

    def __init__(self, gpus):
        self.gpus, self.sent = gpus, None

    def allgather(self, mine):
        return self.gpus

    def bcast(self, obj, root=0):
        self.sent = obj if obj is not None else self.sent
        return self.sent


@pytest.mark.parametrize("bind", ["task", "node"])
def test_frontier_one_gcd_per_rank_is_no_shared_gpu(monkeypatch, bind):
    """docs.FRONTIER_NUMA: under OLCF's own launch (--gpus-per-task=1 --gpu-bind=closest) each of
    a node's 8 ranks sees 1 GCD, each a different one (its bus in OLCF's listing): that is one
    rank per GPU. fedlib refused it ("8 ranks and 1 visible GPU") by counting what one rank sees."""
    from tests.hpc import site_docs as docs

    torch_comm, init = _nccl_stubs(monkeypatch, gpus=1 if bind == "task" else 8)
    gpus = [("frontier00256", f"0000:{bus}:00.0") for bus in docs.FRONTIER_CLOSEST_BUS]
    monkeypatch.setattr(torch_comm, "_world", lambda: (5, 8, _GatherMPI(gpus)))
    monkeypatch.setattr(torch_comm, "gpu_identity", lambda dev: gpus[5][1])
    _one_node(monkeypatch, ranks=8, rank=5)
    torch_comm.TorchComm(device=torch.device("cuda:0"))
    assert len(init.calls) == 1


def test_nccl_two_ranks_on_one_gpu_is_a_config_error_naming_them(monkeypatch):
    from fedlib.config import ConfigError

    torch_comm, init = _nccl_stubs(monkeypatch, gpus=4)
    gpus = [("nid001000", "GPU-aaaa"), ("nid001000", "GPU-bbbb"), ("nid001000", "GPU-aaaa"),
            ("nid001001", "GPU-aaaa")]
    monkeypatch.setattr(torch_comm, "_world", lambda: (2, 4, _GatherMPI(gpus)))
    _one_node(monkeypatch, ranks=3, rank=2)
    with pytest.raises(ConfigError, match=r"ranks 0, 2 on nid001000 share GPU GPU-aaaa; start one rank per"):
        torch_comm.TorchComm(device=torch.device("cuda:0"))
    assert init.calls == []
    torch_comm.check_gpu_ranks("gloo", gpus)  # gloo (and the MPI backend) may share


def test_rendezvous_port_is_held_from_the_moment_it_is_handed_over(monkeypatch):
    """Rank 0 probed a free port, closed it, broadcast it, and the store bound it later: another
    process could take it in between (at scale one does). Now the store listens on the port it
    broadcasts: binding that port again fails while the group is formed."""
    from fedlib.wire import torch_comm

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setenv("FEDLIB_IFNAME", "lo")
    mpi = _GatherMPI([])
    kept = torch_comm._rendezvous(0, mpi)
    host, port = mpi.sent
    assert host == "127.0.0.1"
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("", int(port)))
    del kept


def test_federation_timeout_reaches_the_torch_comm(monkeypatch, tiny_cfg):
    from fedlib import runner

    seen = {}
    monkeypatch.setattr(runner, "make_comm", lambda kind, **kw: seen.update(kw, kind=kind))
    runner.comm_for(tiny_cfg(**{"federation.backend": "torch", "federation.timeout_s": 60}))
    assert (seen["kind"], seen["timeout_s"]) == ("torch", 60)


def test_rendezvous_on_the_configured_interface(monkeypatch):
    from fedlib.wire import torch_comm

    class FakeMPI:
        def bcast(self, obj, root=0):
            return obj

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.setattr(torch_comm.socket, "gethostname", lambda: "login-mgmt-eth")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "=hsn1,lo")
    assert torch_comm.rendezvous_host() == "127.0.0.1"
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "l")  # NCCL's prefix match: `hsn` selects hsn0
    assert torch_comm.rendezvous_host() == "127.0.0.1"
    monkeypatch.setenv("FEDLIB_IFNAME", "hsn0")  # FEDLIB_IFNAME first; no such interface here
    with pytest.raises(ValueError, match=r"^FEDLIB_IFNAME=hsn0: no network interface here with an IPv4"):
        torch_comm._rendezvous(0, FakeMPI())
    monkeypatch.delenv("FEDLIB_IFNAME")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "^docker,lo")  # an exclusion list names no interface
    assert torch_comm.rendezvous_host() == "login-mgmt-eth"
