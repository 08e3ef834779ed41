"""`make gpu-check`: everything a lent GPU should confirm, in one command (about 7 minutes on
one H200: the checks 1-5 take one, the GPU tests the rest).

    python -m fedlib.bench.gpucheck [--device cuda] [--tiny] [--out outputs/gpucheck]

1. the quickstart on the device: equal to itself run to run; and, without dropout and with SGD
   (`EXACT`), to the CPU within 2e-3;
2. bf16 and fp16 autocast train to finite weights;
3. the MPI backend with 2 ranks sharing the GPU equals the 1-process run (`EXACT` too);
4. workload W — N MiniLM clients x one AdamW step on 16 x 128 tokens, FedAvg — a fedlib round
   against a bare torch loop on the same GPU, as a ratio (minimum of each, as `timeit`);
5. allreduce at bert-base size (110M floats): NCCL (one rank per GPU: needs 2 GPUs) and MPI
   staged through pinned host memory, 2 ranks, in GB/s;
6. the GPU tests (tests/hpc/test_gpu.py, the simulated GPU paths of the wire): last, since they
   launch a dozen 2-rank jobs and a slow one must not cost the rows above.

A line per check as it ends; then one table on stdout and the same rows in
`<out>/gpucheck-<UTC time>/gpucheck.csv`; exit 0 when every check passes, 1 when one fails, 2
(at once, one line) when the device is absent. `--device cpu --tiny` runs every code path on
the CPU at toy size (the test suite does). outputs/gpucheck/README.md has the first GPU's table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BERT_BASE = 110_000_000  # floats: bert-base's parameters
TINY_SIZES = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
              "vocab_size": 4096}
TINY = {"model.name": "bert-base-uncased", "model.overrides": TINY_SIZES,
        "data.max_length": 32, "data.max_train_samples": 64, "data.max_eval_samples": 32,
        "federation.num_clients": 2, "federation.rounds": 2, "client.local_steps": 2, "threads": 1}
# Device vs CPU and 2 ranks vs 1 compare kernels' sums, so their runs leave out what else differs
# (the first GPU, 2026-12-04, measured both): dropout, whose masks come from the device's own
# generator (CUDA's Philox is not the CPU's Mersenne Twister: other masks, another training), and
# Adam, which divides each step by its gradient's own scale, so a last-bit difference in a
# near-zero gradient becomes a whole step (2 ranks vs 1: 4.8e-7 with SGD, 1.7e-5 with AdamW).
EXACT = {"client.optimizer": "sgd", "client.lr": 0.05}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
MPI_ROW = "mpi 2 ranks, 1 device (sgd, no dropout)"
GPU_TESTS_S = 480  # 12 launches of 2 ranks: over 240 s on an H200 with cold caches (2026-12-04)
RUN_TO_RUN, TO_CPU, MPI_TO_ONE = 1e-5, 2e-3, 1e-5  # tests/hpc/test_gpu.py's tolerances
Row = dict[str, Any]


def _row(check: str, value: Any, target: str, ok: bool, detail: str = "") -> Row:
    return {"check": check, "value": value, "target": target, "ok": bool(ok), "detail": detail}


def _env() -> dict[str, str]:
    from ..wire.comm import LAUNCH_ENV

    return {**os.environ, **{k: v for k, v in LAUNCH_ENV.items() if k not in os.environ},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _mpiexec() -> str:
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.exists() else "mpiexec"


class Check:
    """The runs one invocation shares (the quickstart's weights, as configured and `EXACT`)."""

    def __init__(self, device: str, tiny: bool, out: Path) -> None:
        self.device, self.tiny, self.out = device, tiny, out
        self._n = 0
        self.weights: Any = None  # the fp32 quickstart's weights, set by `reproducible`
        self.exact: Any = None  # the same without dropout, with SGD (EXACT), on the device

    def overrides(self, **extra: Any) -> dict[str, Any]:
        self._n += 1
        over: dict[str, Any] = {"name": f"run{self._n}", "output_dir": str(self.out / "runs"),
                                "device": self.device, "federation.export": False}
        return {**over, **(TINY if self.tiny else {}), **extra}

    def exact_overrides(self, **extra: Any) -> dict[str, Any]:
        """`EXACT`, and the model's dropout off (on top of TINY's sizes with --tiny)."""
        model = {**(TINY_SIZES if self.tiny else {}), **NO_DROPOUT}
        return {**EXACT, "model.overrides": model, **extra}

    def quickstart(self, **extra: Any) -> Any:
        from .. import config, runner
        from ..wire.comm import LocalComm

        cfg = config.load(ROOT / "params/quickstart.yaml", self.overrides(**extra))
        state = runner.run(cfg, comm=LocalComm(), progress=False).state
        assert state is not None  # a run in this process returns its server state
        return state.weights.cpu()


def gpu_tests(c: Check, tests: list[str]) -> list[Row]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=GPU_TESTS_S)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return [_row("gpu tests", last, "all pass", proc.returncode == 0, " ".join(tests))]


def reproducible(c: Check) -> list[Row]:
    a, b = c.quickstart(), c.quickstart()
    c.weights = a
    c.exact = c.quickstart(**c.exact_overrides())
    cpu = c.quickstart(**c.exact_overrides(device="cpu"))
    rr, dc = (a - b).abs().max().item(), (c.exact - cpu).abs().max().item()
    return [_row("quickstart run to run", rr, f"<= {RUN_TO_RUN:g}", rr <= RUN_TO_RUN, "max |w1 - w2|"),
            _row("quickstart vs cpu (sgd, no dropout)", dc, f"<= {TO_CPU:g}", dc <= TO_CPU,
                 "max |w_dev - w_cpu|; " + spread(c, c.exact - cpu, cpu, TO_CPU))]


def spread(c: Check, d: Any, w: Any, tol: float) -> str:
    """Where a difference of two weight vectors lies: its relative norm and the parameters that
    hold the values over `tol` (the first GPU's miss named none: this says where to look)."""
    from .. import config, runner
    from ..wire.comm import LocalComm

    n_over = int((d.abs() > tol).sum())
    text = (f"|dw| / |w| = {d.norm().item() / max(w.norm().item(), 1e-30):.2e}; "
            f"{n_over} of {d.numel()} values over {tol:g}")
    if not n_over:
        return text  # nothing to place: no model built for the names
    cfg = config.load(ROOT / "params/quickstart.yaml", c.overrides(device="cpu"))
    flat = runner.Context.build(cfg, LocalComm()).flat
    over = [(int((part.abs() > tol).sum()), name)
            for name, part in zip(flat.names, d.split([p.numel() for p in flat.params]), strict=True)]
    worst = sorted((o for o in over if o[0]), reverse=True)[:3]
    return text + ": " + ", ".join(f"{name} {n}" for n, name in worst)


def autocast(c: Check) -> list[Row]:
    rows = []
    for precision in ("bf16", "fp16"):
        w = c.quickstart(**{"client.precision": precision})
        finite = bool(w.isfinite().all())
        rows.append(_row(f"autocast {precision}", (w - c.weights).abs().max().item(), "finite",
                         finite, "max |w - w_fp32|"))
    return rows


def mpi_shared(c: Check) -> list[Row]:
    from ..record import checkpoint
    from .common import overrides_args

    over = c.overrides(**c.exact_overrides())
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fedlib", "run",
                           str(ROOT / "params/quickstart.yaml"), *overrides_args(over), "--quiet"],
                          capture_output=True, text=True, env=_env(), timeout=240)
    if proc.returncode != 0:
        return [_row(MPI_ROW, None, f"<= {MPI_TO_ONE:g}", False,
                     (proc.stderr.strip().splitlines() or ["failed"])[-1])]
    state, _ = checkpoint.load(Path(over["output_dir"]) / over["name"])
    d = (state.weights.cpu() - c.exact).abs().max().item()
    return [_row(MPI_ROW, d, f"<= {MPI_TO_ONE:g}", d <= MPI_TO_ONE, "max |w_2ranks - w_1|")]


def workload_w(c: Check) -> list[Row]:
    """A fedlib round vs the same local steps in a bare loop, same process and device."""
    from .. import config, runner
    from ..hpc.devices import resolve, synchronize
    from ..wire.comm import LocalComm
    from .overhead import bare_round

    n = 2 if c.tiny else 8
    w = {"model.name": "minilm", "data.max_length": 128, "client.batch_size": 16,
         "client.optimizer": "adamw", "client.local_steps": 1, "federation.num_clients": n,
         "federation.rounds": 4, "federation.eval_every": 0, "federation.checkpoint_every": 0,
         "data.max_train_samples": 16 * n}
    cfg = config.load(ROOT / "params/quickstart.yaml", c.overrides(**{**w, **(TINY if c.tiny else {}),
                                                                      "federation.num_clients": n,
                                                                      "client.local_steps": 1}))
    dev = resolve(cfg.device)
    ctx = runner.Context.build(cfg, LocalComm())

    def bare(rnd: int) -> float:
        synchronize(dev)
        t0 = time.perf_counter()
        bare_round(ctx, cfg, rnd)
        synchronize(dev)
        return time.perf_counter() - t0

    bare(1)  # warm-up
    times = [bare(r) for r in range(1, cfg.federation.rounds + 1)]
    fed = runner.run(cfg, comm=LocalComm(), progress=False).rounds["round_s"].iloc[1:].min()
    times += [bare(r) for r in range(1, cfg.federation.rounds + 1)]
    ratio = fed / min(times)
    target, ok = ("<= 1.10", ratio <= 1.10) if not c.tiny else ("reported (--tiny)", True)
    return [_row(f"workload W round / bare loop ({n} clients)", ratio, target, ok,
                 f"fedlib {fed:.4f} s, bare {min(times):.4f} s")]


def _allreduce_worker(backends: list[str], device: str, floats: int, reps: int) -> None:
    """Under mpiexec: median seconds of an allreduce per backend; rank 0 prints JSON lines."""
    import torch

    from ..hpc.devices import resolve
    from ..wire.comm import MPIComm, synchronize
    from ..wire.torch_comm import TorchComm

    dev = resolve(device)
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


def allreduce(c: Check) -> list[Row]:
    """2 ranks, one launch; NCCL only with a GPU per rank (else a row says why not)."""
    import torch

    floats = 1 << 20 if c.tiny else BERT_BASE
    on_gpu = c.device.startswith("cuda")
    backends = ["mpi", "torch"] if not on_gpu or torch.cuda.device_count() >= 2 else ["mpi"]
    rows = [] if "torch" in backends else [_row(
        "allreduce torch (nccl)", None, "2 GPUs", True, "skipped: NCCL runs one rank per GPU; 1 GPU here")]
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fedlib.bench.gpucheck",
                           "--worker", ",".join(backends), c.device, str(floats), "5"],
                          capture_output=True, text=True, env=_env(), timeout=240)
    got = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or len(got) != len(backends):
        why = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return rows + [_row("allreduce", None, "runs", False, why)]
    speed = {}
    for res in got:
        speed[res["backend"]] = floats * 4 / res["seconds"] / 1e9
        how = "pinned host staging" if res["backend"] == "mpi" and on_gpu else res["library"]
        rows.append(_row(f"allreduce {res['backend']} ({how}) GB/s", speed[res["backend"]], "runs", True,
                         f"{floats} floats, median {res['seconds']:.4f} s"))
    if len(speed) == 2:  # NCCL must beat the host round trip; gloo vs MPI on a CPU is information
        ratio = speed["torch"] / speed["mpi"]
        target, ok = ("> 1", ratio > 1) if on_gpu else ("reported (cpu)", True)
        rows.append(_row("allreduce torch / mpi", ratio, target, ok, "bandwidth ratio"))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedlib.bench.gpucheck", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu with --tiny: the code paths")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (a 2-layer BERT, 1M-float allreduce)")
    ap.add_argument("--out", default="outputs/gpucheck", help="folder for gpucheck-<UTC time>/gpucheck.csv")
    ap.add_argument("--tests", nargs="*", default=["tests/hpc/test_gpu.py", "tests/wire/test_comm_gpu.py"],
                    help="pytest targets of check 1 (none: skip it)")
    args = ap.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpucheck: no CUDA device visible to torch {torch.__version__} "
              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); nothing checked",
              file=sys.stderr)
        return 2
    import pandas as pd

    from ..lab import sweep

    out = sweep.fresh_dir(args.out, "gpucheck")
    c = Check(args.device, args.tiny, out)
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("quickstart", lambda: reproducible(c)), ("autocast", lambda: autocast(c)),
        ("mpi shared", lambda: mpi_shared(c)), ("workload W", lambda: workload_w(c)),
        ("allreduce", lambda: allreduce(c)),
        ("gpu tests", lambda: gpu_tests(c, args.tests) if args.tests else [])]
    rows: list[Row] = []
    for name, step in steps:
        t0 = time.perf_counter()
        try:
            got = step()
        except Exception as e:  # one broken check must not hide the others' rows
            got = [_row(name, None, "runs", False, f"{type(e).__name__}: {e}".splitlines()[0])]
        for r in got:
            r["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"gpucheck: {'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['value']} ({r['target']}; "
                  f"{r['detail']}) {r['seconds']} s", flush=True)  # one line a check, as it ends
        rows += got
    df = pd.DataFrame(rows)
    df.to_csv(out / "gpucheck.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(df.to_string(index=False))
    print(f"gpucheck: {int((~df['ok']).sum())} of {len(df)} checks failed -> {out / 'gpucheck.csv'}")
    return 0 if df["ok"].all() else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _allreduce_worker(sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
