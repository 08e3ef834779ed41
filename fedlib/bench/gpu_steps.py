"""The GPU check's correctness steps (fedlib.bench.gpucheck): the device, fedlib's doctor, the
exact rows, accuracy under mixed precision, checkpoint and resume, and, with two GPUs or more,
NCCL against MPI. Each takes the invocation's `Check` and returns table rows."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .gpu_numbers import PEAKS, peak_flops, topology

Row = dict[str, Any]
RUN_TO_RUN, TO_CPU, MPI_TO_ONE, ACCURACY_POINTS = 1e-5, 2e-3, 1e-5, 1.0
MPI_ROW = "mpi 2 ranks, 1 device (sgd, no dropout)"


def _row(check: str, value: Any, target: str, ok: bool, detail: str = "") -> Row:
    return {"check": check, "value": value, "target": target, "ok": bool(ok), "detail": detail}


def device(c: Any) -> list[Row]:
    """The vendor's topology (saved to topology.txt) and the device's peak FLOP/s."""
    import torch

    cmd, text = topology(min(20.0, c.left()))
    (c.out / "topology.txt").write_text(f"$ {cmd}\n{text}\n")
    name = torch.cuda.get_device_name() if c.device.startswith("cuda") else "cpu"
    peaks = {p: peak_flops(name, p) for p in ("fp32", "tf32", "bf16")}
    known = ", ".join(f"{p} {v / 1e12:.1f}" for p, v in peaks.items() if v) or \
        f"not in the table ({', '.join(f for f, _ in PEAKS)})"
    return [_row("topology", cmd or "none", "reported", True, text.splitlines()[0][:100] if text else ""),
            _row(f"device {name}", peaks["bf16"], "reported", True, f"dense peak TFLOP/s: {known}")]


def doctor(c: Any) -> list[Row]:
    proc = subprocess.run([sys.executable, "-m", "fedlib", "doctor", str(c.root / "params/quickstart.yaml"),
                           "--set", f"device={c.device}", "--set", f"output_dir={c.out / 'runs'}"],
                          capture_output=True, text=True, env=c.env(), timeout=max(5.0, c.left()))
    (c.out / "doctor.txt").write_text(proc.stdout + proc.stderr)
    notes = [s for s in proc.stdout.splitlines() if s.startswith(("PROBLEM", "WARNING"))]
    return [_row("fedlib doctor", proc.returncode, "0", proc.returncode == 0,
                 "; ".join(notes)[:200] or "ok (doctor.txt)")]


def exact(c: Any) -> list[Row]:
    """Run to run as configured; the device against the CPU and 2 ranks against 1 without
    dropout and with SGD (gpucheck.EXACT: only the kernels' sums differ)."""
    a, b = c.quickstart(), c.quickstart()
    c.weights = a
    c.exact = c.quickstart(**c.exact_overrides())
    cpu = c.quickstart(**c.exact_overrides(device="cpu"))
    rr, dc = (a - b).abs().max().item(), (c.exact - cpu).abs().max().item()
    return [_row("quickstart run to run", rr, f"<= {RUN_TO_RUN:g}", rr <= RUN_TO_RUN, "max |w1 - w2|"),
            _row("quickstart vs cpu (sgd, no dropout)", dc, f"<= {TO_CPU:g}", dc <= TO_CPU,
                 "max |w_dev - w_cpu|; " + spread(c, c.exact - cpu, cpu, TO_CPU)), *_mpi_shared(c)]


def spread(c: Any, d: Any, w: Any, tol: float) -> str:
    """Where a difference of two weight vectors lies: its relative norm and the parameters that
    hold the values over `tol` (the first GPU's miss named none: this says where to look)."""
    from .. import config, runner
    from ..wire.comm import LocalComm

    n_over = int((d.abs() > tol).sum())
    text = (f"|dw| / |w| = {d.norm().item() / max(w.norm().item(), 1e-30):.2e}; "
            f"{n_over} of {d.numel()} values over {tol:g}")
    if not n_over:
        return text  # nothing to place: no model built for the names
    cfg = config.load(c.root / "params/quickstart.yaml", c.overrides(device="cpu"))
    flat = runner.Context.build(cfg, LocalComm()).flat
    over = [(int((part.abs() > tol).sum()), name)
            for name, part in zip(flat.names, d.split([p.numel() for p in flat.params]), strict=True)]
    worst = sorted((o for o in over if o[0]), reverse=True)[:3]
    return text + ": " + ", ".join(f"{name} {n}" for n, name in worst)


def _ranks(c: Any, over: dict[str, Any], ranks: int = 2) -> tuple[Any, str]:
    """(the weights a `ranks`-rank run of `over` checkpointed, or None; its last stderr line)."""
    from ..record import checkpoint
    from .common import overrides_args

    proc = subprocess.run([c.mpiexec(), "-n", str(ranks), sys.executable, "-m", "fedlib", "run",
                           str(c.root / "params/quickstart.yaml"), *overrides_args(over), "--quiet"],
                          capture_output=True, text=True, env=c.env(), timeout=max(5.0, c.left()))
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return checkpoint.load(Path(over["output_dir"]) / over["name"])[0].weights.cpu(), ""


def _mpi_shared(c: Any) -> list[Row]:
    w, why = _ranks(c, c.overrides(**c.exact_overrides()))
    if w is None:
        return [_row(MPI_ROW, None, f"<= {MPI_TO_ONE:g}", False, why)]
    d = (w - c.exact).abs().max().item()
    return [_row(MPI_ROW, d, f"<= {MPI_TO_ONE:g}", d <= MPI_TO_ONE, "max |w_2ranks - w_1|")]


def accuracy(c: Any) -> list[Row]:
    """The quickstart (its real data) for a few rounds in fp32, bf16 and fp16: the accuracy
    each ends with, and the difference from fp32 in points (not only finite weights)."""
    from .. import config, runner
    from ..wire.comm import LocalComm

    rounds = 3 if not c.tiny else 2
    got = {}
    for precision in ("fp32", "bf16", "fp16"):
        cfg = config.load(c.root / "params/quickstart.yaml",
                          c.overrides(**{"client.precision": precision, "federation.rounds": rounds}))
        res = runner.run(cfg, comm=LocalComm(), progress=False)
        assert res.state is not None
        finite = bool(res.state.weights.isfinite().all())
        got[precision] = (100 * float(res.rounds["accuracy"].iloc[-1]), finite)
    rows = [_row("accuracy fp32 (%)", round(got["fp32"][0], 2), "reported", got["fp32"][1],
                 f"{rounds} quickstart rounds")]
    for p in ("bf16", "fp16"):
        delta = abs(got[p][0] - got["fp32"][0])
        target, ok = (f"<= {ACCURACY_POINTS:g} point", delta <= ACCURACY_POINTS) if not c.tiny else \
            ("reported (--tiny)", True)
        rows.append(_row(f"accuracy {p} - fp32 (points)", round(delta, 2), target, ok and got[p][1],
                         f"{p} {got[p][0]:.2f}%, weights {'finite' if got[p][1] else 'NOT finite'}"))
    return rows


def checkpoint_resume(c: Any) -> list[Row]:
    """2 rounds checkpointed, resumed to 3, against 3 uninterrupted: the same weights."""
    from .. import config, runner
    from ..wire.comm import LocalComm

    full = c.quickstart(**{"federation.rounds": 3})
    over = c.overrides(**{"federation.rounds": 2, "federation.checkpoint_every": 1})
    runner.run(config.load(c.root / "params/quickstart.yaml", over), comm=LocalComm(), progress=False)
    again = config.load(c.root / "params/quickstart.yaml", {**over, "federation.rounds": 3})
    state = runner.run(again, comm=LocalComm(), resume=True, progress=False).state
    assert state is not None
    d = (state.weights.cpu() - full).abs().max().item()
    return [_row("checkpoint + resume on the device", d, f"<= {RUN_TO_RUN:g}", d <= RUN_TO_RUN,
                 "max |w_resumed - w_uninterrupted|, 2 + 1 rounds")]


def several_gpus(c: Any) -> list[Row]:
    """With 2 GPUs or more (or --device cpu: the code path): allreduce NCCL vs MPI, and the
    torch backend's training equal to MPI's."""
    import torch

    if c.device.startswith("cuda") and torch.cuda.device_count() < 2:
        return [_row("nccl vs mpi", None, "2 GPUs", True, "skipped: NCCL runs one rank per GPU; 1 GPU here")]
    rows = allreduce(c)
    mpi, why = _ranks(c, c.overrides(**c.exact_overrides()))
    nccl, why2 = _ranks(c, c.overrides(**c.exact_overrides(**{"federation.backend": "torch"})))
    if mpi is None or nccl is None:
        return [*rows, _row("torch backend = mpi", None, f"<= {MPI_TO_ONE:g}", False, why or why2)]
    d = (nccl - mpi).abs().max().item()
    return [*rows, _row("torch backend = mpi (2 ranks)", d, f"<= {MPI_TO_ONE:g}", d <= MPI_TO_ONE,
                        "max |w_torch - w_mpi|")]


def allreduce_worker(backends: list[str], device_name: str, floats: int, reps: int) -> None:
    """Under mpiexec: median seconds of an allreduce per backend; rank 0 prints JSON lines."""
    import torch

    from ..hpc.devices import resolve
    from ..wire.comm import MPIComm, synchronize
    from ..wire.torch_comm import TorchComm

    dev = resolve(device_name)
    for backend in backends:
        comm: Any = MPIComm() if backend == "mpi" else TorchComm(device=dev)
        buf = torch.ones(floats, device=dev)
        comm.allreduce(buf)  # warm-up: connections, pinned staging buffers
        times = []
        for _ in range(reps):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce(buf)
            synchronize(dev)
            times.append(time.perf_counter() - t0)
        if comm.rank == 0:
            print("RESULT", json.dumps({"backend": backend, "library": getattr(comm, "backend", "mpi"),
                                        "seconds": statistics.median(times)}), flush=True)
        if backend == "torch":
            comm.close()


def allreduce(c: Any) -> list[Row]:
    """2 ranks, one launch, a bert-base-sized buffer: MPI (staged through pinned host memory on a
    GPU) and the torch backend (NCCL on GPUs, gloo on the CPU), in GB/s."""
    floats = 1 << 20 if c.tiny else 110_000_000
    on_gpu = c.device.startswith("cuda")
    proc = subprocess.run([c.mpiexec(), "-n", "2", sys.executable, "-m", "fedlib.bench.gpucheck",
                           "--worker", "mpi,torch", c.device, str(floats), "5"],
                          capture_output=True, text=True, env=c.env(), timeout=max(5.0, c.left()))
    got = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or len(got) != 2:
        return [_row("allreduce", None, "runs", False, (proc.stderr.strip().splitlines() or ["failed"])[-1])]
    rows, speed = [], {}
    for res in got:
        speed[res["backend"]] = floats * 4 / res["seconds"] / 1e9
        how = "pinned host staging" if res["backend"] == "mpi" and on_gpu else res["library"]
        rows.append(_row(f"allreduce {res['backend']} ({how}) GB/s", speed[res["backend"]], "runs", True,
                         f"{floats} floats, median {res['seconds']:.4f} s"))
    ratio = speed["torch"] / speed["mpi"]
    target, ok = ("> 1", ratio > 1) if on_gpu else ("reported (cpu)", True)
    return [*rows, _row("allreduce torch / mpi", ratio, target, ok, "bandwidth ratio")]
