"""The device path on CUDA (skipped without a GPU): 2 ranks sharing one GPU reproduce
themselves run to run, match the CPU within a loose tolerance (kernels sum in other orders;
without dropout and with SGD, which would make other differences),
and NCCL (federation.backend=torch) equals MPI (with host staging) on the same GPU. NCCL runs one
rank per GPU (two ranks on one GPU are a config error: NCCL would abort on "Duplicate GPU
detected"); results do not depend on the number of ranks, so 1 NCCL rank on a 1-GPU machine is
compared with 2 MPI ranks sharing it."""


import pytest
import torch

from fedlib.bench.gpucheck import EXACT, NO_DROPOUT
from fedlib.record import checkpoint
from tests.conftest import TINY_MODEL, run_on_ranks

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _run(tmp_path, name, ranks=2, **extra):
    run_on_ranks(ranks, tmp_path, name, **{"federation.num_clients": 4, **extra})
    state, _ = checkpoint.load(tmp_path / name)  # saved from the GPU, loads on the CPU
    assert state.weights.device == torch.device("cpu")
    return state.weights


@pytest.mark.parametrize("aggregation", ["collective", "p2p"])
def test_cuda_two_ranks_one_gpu_reproducible_and_close_to_cpu(tmp_path, aggregation):
    """Without dropout and with SGD (gpucheck.EXACT: the device draws other dropout masks, and
    Adam turns last-bit differences into steps), so only the kernels' sums differ."""
    agg = {"federation.aggregation": aggregation, **EXACT,
           "model.overrides": {**TINY_MODEL["overrides"], **NO_DROPOUT}}
    a = _run(tmp_path, "gpu1", device="cuda", **agg)
    b = _run(tmp_path, "gpu2", device="cuda", **agg)
    cpu = _run(tmp_path, "cpu", device="cpu", **agg)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # see README: determinism on GPU
    torch.testing.assert_close(a, cpu, rtol=0, atol=2e-3)


@pytest.mark.parametrize("aggregation", ["collective", "p2p"])
def test_nccl_backend_equals_mpi_on_gpu(tmp_path, aggregation):
    agg = {"federation.aggregation": aggregation, "device": "cuda"}
    mpi = _run(tmp_path, "mpi", **agg)
    ranks = min(2, torch.cuda.device_count())  # NCCL: at most one rank per GPU
    nccl = _run(tmp_path, "nccl", ranks=ranks, **agg, **{"federation.backend": "torch"})
    torch.testing.assert_close(nccl, mpi, rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_autocast_trains(tmp_path, precision):
    w = _run(tmp_path, precision, device="cuda", **{"client.precision": precision})
    assert torch.isfinite(w).all()
