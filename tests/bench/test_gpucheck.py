"""`make gpu-check` (fedlib.bench.gpucheck): without the device it says so in one line and exits
2; `--device cpu --tiny` runs every step's code path here, at toy size; the numbers it turns
measurements into (MFU, peaks) and its time boxes are checked by hand."""

import csv
import time
import types

import pytest
import torch

from fedlib.bench import gpu_numbers, gpu_steps, gpucheck


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_without_a_gpu_one_line_and_exit_2(tmp_path, capsys):
    assert gpucheck.main(["--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("gpucheck: no CUDA device")
    assert list(tmp_path.iterdir()) == []  # nothing written


GPUCHECK = ["-m", "fedlib.bench.gpucheck", "--device", "cpu", "--tiny", "--out", "{out}", "--scale", "8",
            "--tests", "tests/wire/test_comm_gpu.py::test_host_staging_is_pinned_and_reused"]


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.early(gpucheck=GPUCHECK)
def test_every_step_runs_on_the_cpu_at_toy_size(early):
    """`python -m fedlib.bench.gpucheck ...`, run from the session's start beside the suite
    (conftest.Lane)."""
    proc = early("gpucheck")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (csv_path,) = proc.out.glob("gpucheck-*/gpucheck.csv")
    rows = {r["check"]: r for r in csv.DictReader(csv_path.open())}
    steps = list(dict.fromkeys(r["step"] for r in rows.values()))
    assert steps == list(gpucheck.BOXES)  # every step, in the order, the tests last
    assert sum(gpucheck.BOXES.values()) <= 8 * 60  # the whole check fits a lent GPU's 8 minutes
    assert {"topology", "device cpu", "fedlib doctor", "quickstart run to run",
            "quickstart vs cpu (sgd, no dropout)", "mpi 2 ranks, 1 device (sgd, no dropout)",
            "accuracy fp32 (%)", "accuracy bf16 - fp32 (points)", "accuracy fp16 - fp32 (points)",
            "per-client overhead (2 clients)", "per-client overhead (4 clients)",
            "staging s/round, 2 ranks, overlap off", "staging s/round, 2 ranks, overlap on",
            "checkpoint + resume on the device", "torch backend = mpi (2 ranks)", "gpu tests"} <= set(rows)
    assert float(rows["quickstart run to run"]["value"]) == 0.0  # on one device type: bitwise
    assert float(rows["mpi 2 ranks, 1 device (sgd, no dropout)"]["value"]) <= 1e-5
    assert float(rows["checkpoint + resume on the device"]["value"]) <= 1e-5
    assert float(rows["torch backend = mpi (2 ranks)"]["value"]) <= 1e-5
    assert rows["gpu tests"]["value"].startswith("1 passed") and rows["fedlib doctor"]["value"] == "0"
    throughput = list(csv.DictReader((csv_path.parent / "throughput.csv").open()))
    assert [(r["batch"], r["precision"]) for r in throughput] == [("4", "fp32"), ("4", "bf16"), ("8", "fp32"),
                                                                 ("8", "bf16")]
    assert all(float(r["fedlib_tokens_s"]) > 0 and float(r["bare_tokens_s"]) > 0 for r in throughput)
    assert all(r["ok"] == "True" for r in rows.values())  # exit 0 says so
    assert (csv_path.parent / "topology.txt").is_file() and (csv_path.parent / "doctor.txt").is_file()
    assert "gpucheck: ok   quickstart run to run: 0.0" in proc.stdout  # a line per row as it ends


def test_mfu_by_hand():
    """PaLM's count, by hand: MiniLM (22,714,371 trainable values, 6 layers, width 384) at 128
    tokens: 6 x 22,714,371 + 12 x 6 x 384 x 128 = 136,286,226 + 3,538,944 = 139,825,170 FLOPs a
    token; the first GPU's 143,000 tokens/s is 2.000e13 FLOP/s, 2.02% of an H200's dense bf16
    989.4 TFLOP/s."""
    per = gpu_numbers.flops_per_token(22_714_371, 6, 384, 128)
    assert per == 139_825_170
    peak = gpu_numbers.peak_flops("NVIDIA H200", "bf16")
    assert peak == 989.4e12 and gpu_numbers.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert round(100 * gpu_numbers.mfu(143_000, per, peak), 2) == 2.02
    assert gpu_numbers.peak_flops("AMD Instinct MI250X", "tf32") is None  # no TF32 on CDNA2
    assert gpu_numbers.mfu(143_000, per, None) is None


def test_a_step_out_of_its_box_is_cut_in_one_row_and_the_next_runs(tmp_path):
    c = gpucheck.Check("cpu", True, tmp_path)
    t0 = time.monotonic()
    (row,) = gpucheck.timed(c, "slow", 0.3, lambda: [time.sleep(5)])
    assert time.monotonic() - t0 < 2 and row["ok"] is False
    assert row["detail"] == "out of time after 0.3 s: cut"
    (row,) = gpucheck.timed(c, "fine", 5, lambda: [gpu_steps._row("fine", 1, "reported", True)])
    assert row["ok"] is True and row["step"] == "fine"


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
    assert gpu_steps.spread(c, d, w, 2e-3) == "|dw| / |w| = 3.54e-03; 3 of 6 values over 0.002: b 2, a 1"
