"""`make gpu-check`: what only a GPU can answer, in one script, each step time-boxed, within
8 minutes on one GPU (a lent GPU's time is short: a step that runs out of its box is cut, says
so in its row, and the next one starts).

    python -m fedlib.bench.gpucheck [--device cuda] [--tiny] [--out outputs/gpucheck]

1. the device: its topology (`nvidia-smi topo -m`, or the ROCm / XPU tool), its dense peak
   FLOP/s per precision, and `fedlib doctor` on it (fedlib.bench.gpu_steps);
2. the exact rows: the quickstart run to run, and, without dropout and with SGD (`EXACT`), the
   device against the CPU and 2 MPI ranks sharing the device against 1 process;
3. accuracy under mixed precision: fp32 vs bf16 and fp16 over a few quickstart rounds on its
   real data, |difference| <= 1 point;
4. throughput: tokens/s, MFU and peak memory for MiniLM and BERT-base at 16 and 32 x 128,
   fp32 / TF32 / bf16, fedlib's client step beside a bare loop (throughput.csv); per-client
   overhead at 8 and 64 clients (fedlib.bench.gpu_speed);
5. pinned host <-> device bandwidth for 440 MB, and the staging seconds per round of 2 ranks
   with the p2p overlap on and off;
6. checkpoint and resume on the device: the same weights as an uninterrupted run;
7. only with 2 GPUs or more: allreduce NCCL vs MPI, and the torch backend's run equal to MPI's;
8. the GPU-specific tests (tests/wire/test_comm_gpu.py; the 2-rank tests of tests/hpc/test_gpu.py
   repeat the CPU suite's paths and are left to it).

A line per row as it ends; then one table on stdout and the same rows in
`<out>/gpucheck-<UTC time>/gpucheck.csv` (beside throughput.csv, topology.txt, doctor.txt); exit
0 when every check passes, 1 when one fails, 2 (at once, one line) when the device is absent.
`--device cpu --tiny` runs every step's code path on the CPU at toy size (the test suite does).
outputs/gpucheck/README.md has the first GPU's table.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from . import gpu_speed, gpu_steps

ROOT = Path(__file__).resolve().parents[2]
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
TESTS = ["tests/wire/test_comm_gpu.py"]
# seconds per step: 480 in all, the 8 minutes a lent GPU is given (topology, doctor and the tests
# are quick; a 2-rank launch costs ~20 s on a cold GPU; "several GPUs" returns at once on one)
BOXES = {"device": 15, "doctor": 30, "exact": 75, "accuracy": 55, "throughput": 100, "overhead": 35,
         "transfer": 45, "checkpoint": 35, "several GPUs": 50, "gpu tests": 40}
Row = dict[str, Any]


class OutOfTime(Exception):
    """A step used up its box."""


class Check:
    """What one invocation's steps share: the device, the size, the output folder, the clock of
    the running step, and the quickstart's weights as configured and `EXACT`."""

    def __init__(self, device: str, tiny: bool, out: Path) -> None:
        self.device, self.tiny, self.out, self.root = device, tiny, out, ROOT
        self._n, self.deadline = 0, float("inf")
        self.weights: Any = None
        self.exact: Any = None

    def left(self) -> float:
        """Seconds the running step has left (for the subprocesses it starts)."""
        return self.deadline - time.monotonic()

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

    @staticmethod
    def env() -> dict[str, str]:
        from ..wire.comm import LAUNCH_ENV

        return {**os.environ, **{k: v for k, v in LAUNCH_ENV.items() if k not in os.environ},
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}

    @staticmethod
    def mpiexec() -> str:
        local = Path(sys.executable).with_name("mpiexec")
        return str(local) if local.exists() else "mpiexec"


def gpu_tests(c: Check, tests: list[str]) -> list[Row]:
    if not tests:
        return []
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT, capture_output=True, text=True, env=c.env(), timeout=max(5.0, c.left()))
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return [gpu_steps._row("gpu tests", last, "all pass", proc.returncode == 0, " ".join(tests))]


def _alarm(_num: int, _frame: FrameType | None) -> None:
    raise OutOfTime


def timed(c: Check, name: str, box: float, step: Callable[[], list[Row]]) -> list[Row]:
    """`step`'s rows, or one row saying why there are none: it failed, or ran out of its box."""
    t0 = time.monotonic()
    c.deadline = t0 + box
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, box)
    try:
        got = step()
    except (OutOfTime, subprocess.TimeoutExpired):
        got = [gpu_steps._row(name, None, f"<= {box:g} s", False, f"out of time after {box:g} s: cut")]
    except Exception as e:  # one broken step must not hide the others' rows
        got = [gpu_steps._row(name, None, "runs", False, f"{type(e).__name__}: {e}".splitlines()[0])]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    for r in got:
        r["step"], r["seconds"] = name, round(time.monotonic() - t0, 1)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedlib.bench.gpucheck", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu with --tiny: the code paths")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (a 2-layer BERT, 1M-float buffers)")
    ap.add_argument("--out", default="outputs/gpucheck", help="folder for gpucheck-<UTC time>/gpucheck.csv")
    ap.add_argument("--tests", nargs="*", default=TESTS, help="pytest targets of the last step (none: skip)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step's time box")
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
        ("device", lambda: gpu_steps.device(c)), ("doctor", lambda: gpu_steps.doctor(c)),
        ("exact", lambda: gpu_steps.exact(c)), ("accuracy", lambda: gpu_steps.accuracy(c)),
        ("throughput", lambda: gpu_speed.throughput(c)), ("overhead", lambda: gpu_speed.overhead(c)),
        ("transfer", lambda: gpu_speed.transfer(c)), ("checkpoint", lambda: gpu_steps.checkpoint_resume(c)),
        ("several GPUs", lambda: gpu_steps.several_gpus(c)), ("gpu tests", lambda: gpu_tests(c, args.tests))]
    rows: list[Row] = []
    for name, step in steps:
        for r in timed(c, name, BOXES[name] * args.scale, step):
            print(f"gpucheck: {'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['value']} ({r['target']}; "
                  f"{r['detail']}) {r['seconds']} s", flush=True)  # one line a row, as its step ends
            rows.append(r)
    df = pd.DataFrame(rows)[["step", "check", "value", "target", "ok", "detail", "seconds"]]
    df.to_csv(out / "gpucheck.csv", index=False)
    with pd.option_context("display.width", 220, "display.max_colwidth", 70):
        print(df.drop(columns="step").to_string(index=False))
    print(f"gpucheck: {int((~df['ok']).sum())} of {len(df)} checks failed -> {out / 'gpucheck.csv'}")
    return 0 if df["ok"].all() else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        gpu_steps.allreduce_worker(sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
