"""`make gpu-check` (fedlib.bench.gpucheck): without the device it says so in one line and exits
2; `--device cpu --tiny` runs every check's code path here, at toy size."""

import csv
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from fedlib.bench import gpucheck

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_without_a_gpu_one_line_and_exit_2(tmp_path, capsys):
    assert gpucheck.main(["--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("gpucheck: no CUDA device")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
@pytest.mark.mpi
def test_every_check_runs_on_the_cpu_at_toy_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedlib.bench.gpucheck", "--device", "cpu", "--tiny",
                           "--out", str(tmp_path), "--tests",
                           "tests/wire/test_comm_gpu.py::test_host_staging_is_pinned_and_reused"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (csv_path,) = tmp_path.glob("gpucheck-*/gpucheck.csv")
    rows = {r["check"]: r for r in csv.DictReader(csv_path.open())}
    assert list(rows) == [  # the slow GPU tests last: they must not cost the other rows
        "quickstart run to run", "quickstart vs cpu (sgd, no dropout)", "autocast bf16", "autocast fp16",
        "mpi 2 ranks, 1 device (sgd, no dropout)", "workload W round / bare loop (2 clients)",
        "allreduce mpi (mpi) GB/s", "allreduce torch (gloo) GB/s", "allreduce torch / mpi", "gpu tests"]
    assert rows["gpu tests"]["value"].startswith("1 passed")
    # on one device type the runs repeat bitwise, and 2 MPI ranks equal 1 process
    assert float(rows["quickstart run to run"]["value"]) == 0.0
    assert float(rows["mpi 2 ranks, 1 device (sgd, no dropout)"]["value"]) <= 1e-5
    assert 0 < float(rows["autocast bf16"]["value"]) < 1e-2  # bf16 changes the weights, a little
    assert float(rows["workload W round / bare loop (2 clients)"]["value"]) > 0
    assert all(r["ok"] == "True" for r in rows.values())  # exit 0 says so
    assert "gpucheck: " in proc.stdout and "checks failed" in proc.stdout
    assert "gpucheck: ok   quickstart run to run: 0.0" in proc.stdout  # a line per check as it ends
    assert "0 of 165827 values over 0.002" in rows["quickstart vs cpu (sgd, no dropout)"]["detail"]


def test_spread_names_the_parameters_over_the_tolerance(tmp_path, monkeypatch):
    """By hand: parameters a (2 values), b (3), c (1); d = [0, 5e-3 | 3e-3, 0, 4e-3 | 0] over 2e-3
    has 1 value in a and 2 in b; |d| = sqrt(25 + 9 + 16) e-3 = 7.07e-3, |w| = 2."""
    from fedlib import runner

    ps = [torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 1)]
    flat = types.SimpleNamespace(names=["a", "b", "c"], params=ps)
    monkeypatch.setattr(runner.Context, "build", lambda cfg, comm: types.SimpleNamespace(flat=flat))
    c = gpucheck.Check("cpu", True, tmp_path)
    w = torch.tensor([2.0, 0, 0, 0, 0, 0])
    d = torch.tensor([0, 5e-3, 3e-3, 0, 4e-3, 0])
    assert gpucheck.spread(c, d, w, 2e-3) == "|dw| / |w| = 3.54e-03; 3 of 6 values over 0.002: b 2, a 1"
