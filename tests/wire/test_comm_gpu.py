"""The GPU paths of the wire, simulated (no GPU here): GPU-aware MPI asked of the library that
mpi4py really loaded, host staging in pinned memory, and the overlap thread on its own stream."""

import ctypes

import pytest
import torch

from fedlib.wire import comm, overlap
from fedlib.wire.timer import Timer


class _FakeLib:
    def __init__(self, exports):
        for name, value in exports.items():
            setattr(self, name, lambda v=value: v)


def test_gpu_aware_mpi_is_asked_through_mpi4pys_own_handle(monkeypatch):
    """Python loads mpi4py.MPI with RTLD_LOCAL: CDLL(None) (the global namespace) never finds
    libmpi's MPIX_Query_cuda_support, the module's own handle does."""
    from mpi4py import MPI

    opened = []

    def fake_cdll(path, *a, **k):
        opened.append(path)
        if path is None:
            raise AttributeError("undefined symbol: MPIX_Query_cuda_support")  # as here, for real
        return _FakeLib({"MPIX_Query_cuda_support": 1} if path == MPI.__file__ else {})

    monkeypatch.delenv("FEDLIB_CUDA_AWARE_MPI", raising=False)
    monkeypatch.delenv("MPICH_GPU_SUPPORT_ENABLED", raising=False)
    monkeypatch.setattr(ctypes, "CDLL", fake_cdll)
    assert comm.mpi_gpu_support() == (True, "MPIX_Query_cuda_support() = 1")
    assert comm.cuda_aware_mpi() is True
    assert opened[0] == MPI.__file__


def test_gpu_aware_mpi_on_cray_needs_the_gtl_library(monkeypatch):
    monkeypatch.delenv("FEDLIB_CUDA_AWARE_MPI", raising=False)
    monkeypatch.setattr(ctypes, "CDLL", lambda path, *a, **k: _FakeLib({}))  # Cray MPICH: no MPIX_
    monkeypatch.setenv("MPICH_GPU_SUPPORT_ENABLED", "1")
    monkeypatch.setattr(comm, "_loaded", lambda prefix: None)
    ok, why = comm.mpi_gpu_support()
    assert not ok and "no GTL library loaded" in why
    monkeypatch.setattr(comm, "_loaded", lambda prefix: "libmpi_gtl_cuda.so.0")
    assert comm.mpi_gpu_support() == (True, "MPICH_GPU_SUPPORT_ENABLED=1, libmpi_gtl_cuda.so.0 loaded")
    monkeypatch.setenv("FEDLIB_CUDA_AWARE_MPI", "0")
    assert comm.mpi_gpu_support() == (False, "FEDLIB_CUDA_AWARE_MPI=0")


def test_the_real_library_is_asked_here():
    """Open MPI's wheel here exports the query (and says no: it has no CUDA)."""
    pytest.importorskip("mpi4py")
    assert comm.mpi_gpu_support() in [(False, "MPIX_Query_cuda_support() = 0"),
                                      (False, "MPIX_Query_rocm_support() = 0")]


def test_host_staging_is_pinned_and_reused(monkeypatch):
    made = []
    real_empty = torch.empty

    def empty(*shape, pin_memory=False, **kw):
        made.append(pin_memory)
        return real_empty(*shape, **kw)  # no GPU here to pin for

    monkeypatch.setattr(torch, "empty", empty)
    stage = comm.Staging()
    a = stage.host(torch.zeros(5, dtype=torch.float16))
    assert stage.host(torch.ones(5, dtype=torch.float16)) is a  # pinning costs more than the copy
    assert stage.host(torch.zeros(5)) is not a
    assert made == [True, True]


class _Stream:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_event(self, ev):
        self.log.append(("wait", self.name, ev.on))

    def synchronize(self):
        self.log.append(("sync", self.name))


class _FakeCuda:
    """The slice of torch.cuda the pipeline uses, recording which stream is current."""

    def __init__(self):
        self.log, self.main = [], None
        self.main = _Stream("main", self.log)
        self.current = self.main
        fake = self

        class Event:
            on = None

            def record(self, stream):
                self.on = stream.name
                fake.log.append(("record", stream.name))

        class Ctx:
            def __init__(self, stream):
                self.stream = stream

            def __enter__(self):
                self.prev, fake.current = fake.current, self.stream

            def __exit__(self, *exc):
                fake.current = self.prev

        self.Event, self.stream = Event, Ctx
        self.Stream = lambda device: _Stream("side", self.log)
        self.current_stream = lambda device=None: self.current


def test_overlap_jobs_run_on_their_own_cuda_stream(monkeypatch):
    fake = _FakeCuda()
    for name in ("Stream", "Event", "stream", "current_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    pipe = overlap.Pipeline(True, torch.device("cuda:0"))
    ran_on = []
    pipe.run(lambda t: ran_on.append(fake.current.name), Timer())
    pipe.drain(Timer())
    pipe.close()
    assert ran_on == ["side"]  # not the training stream
    # ready when submitted (recorded on the caller's stream), complete when drained
    assert fake.log == [("record", "main"), ("wait", "side", "main"), ("sync", "side")]
    assert overlap.Pipeline(True, torch.device("cpu"))._stream is None
