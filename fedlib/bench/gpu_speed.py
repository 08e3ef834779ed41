"""The GPU check's speed steps (fedlib.bench.gpucheck): what a GPU's time goes to.

- `throughput`: tokens/s, MFU and peak memory of local training for MiniLM and BERT-base at
  batch 16 and 32 x 128 tokens, fp32 / TF32 / bf16, fedlib's client step (a run's compute_s)
  beside a bare loop over the same batches on the same model (as sim.client.train steps);
  every number also goes to `throughput.csv`.
- `overhead`: per-client overhead = (round - the clients' training) / clients, at 8 and 64
  clients of one step each: what fedlib spends around each client.
- `transfer`: pinned host <-> device bandwidth for a bert-base-sized buffer (440 MB), and the
  seconds per round that two MPI ranks sharing the device spend staging updates through host
  memory, with the p2p overlap thread on and off.
Tokens are the padded batch's (the shard pads to each batch's longest sequence, at most 128).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .gpu_numbers import flops_per_token, mfu, peak_flops

BERT_BASE = 110_000_000  # floats: bert-base's parameters, 440 MB in fp32
Row = dict[str, Any]


def _row(check: str, value: Any, target: str, ok: bool, detail: str = "") -> Row:
    return {"check": check, "value": value, "target": target, "ok": bool(ok), "detail": detail}


def _precision(name: str) -> str:
    """tf32 is fp32 with TF32 matmuls allowed (a process-wide torch switch, set per case)."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        torch.backends.cudnn.allow_tf32 = name == "tf32"
    return "bf16" if name == "bf16" else "fp32"


def _bare(ctx: Any, cfg: Any, steps: int) -> tuple[float, int]:
    """(seconds, tokens) of `steps` training steps on client 0's batches, as sim.client.train
    takes them, with nothing around them."""
    from .. import seeds
    from ..hpc.devices import Precision, synchronize
    from ..sim import client

    shard, model, dev = ctx.shards[0], ctx.model, ctx.device
    gen = seeds.generator(seeds.seed(cfg.seed, seeds.Stream.CLIENT, 1, 0), seeds.Stream.BATCHES)
    prec = Precision(cfg.client.precision, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = client.make_optimizer(params, cfg.client)
    model.train()
    batches = [client.on(shard.batch(idx), dev) for idx in client.batches(len(shard), cfg.client.batch_size,
                                                                             steps, gen)]
    synchronize(dev)
    t0 = time.perf_counter()
    for b in batches:
        with prec.autocast():
            loss = model(**b).loss
        opt.zero_grad(set_to_none=True)
        prec.step(opt, loss.float(), params, cfg.client.max_grad_norm)
    synchronize(dev)
    return time.perf_counter() - t0, sum(int(b["input_ids"].numel()) for b in batches)


def throughput(c: Any) -> list[Row]:
    import torch

    from .. import config, runner
    from ..wire.comm import LocalComm

    cuda = c.device.startswith("cuda")
    models = ["minilm", "bert-base-uncased"] if not c.tiny else ["bert-base-uncased"]
    sizes, seq, steps = ([16, 32], 128, 6) if not c.tiny else ([4, 8], 32, 2)
    precisions = ["fp32", "tf32", "bf16"] if cuda else ["fp32", "bf16"]
    name = torch.cuda.get_device_name() if cuda else "cpu"
    rows, table = [], []
    for model in models:
        for batch in sizes:
            for prec in precisions:
                over = c.overrides(**{"model.name": model, "data.max_length": seq, "client.batch_size": batch,
                                      "client.local_steps": steps, "client.precision": _precision(prec),
                                      "federation.num_clients": 1, "federation.rounds": 3,
                                      "federation.eval_every": 0, "federation.checkpoint_every": 0,
                                      "data.max_train_samples": batch * steps})
                if c.tiny:
                    over["model.name"] = c.overrides()["model.name"]
                cfg = config.load(c.root / "params/quickstart.yaml", over)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                fed = runner.run(cfg, comm=LocalComm(), progress=False).rounds
                peak_mib = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
                ctx = runner.Context.build(cfg, LocalComm())
                _bare(ctx, cfg, 1)  # warm-up
                bare_s, tokens = min(_bare(ctx, cfg, steps) for _ in range(2))
                fed_s = float(fed["compute_s"].iloc[1:].min())
                mc = ctx.model.config
                width = tokens / (batch * steps)
                per_token = flops_per_token(ctx.flat.numel, mc.num_hidden_layers, mc.hidden_size,
                                            round(width))
                tok_fed, tok_bare = tokens / fed_s, tokens / bare_s
                peak = peak_flops(name, prec)
                got = mfu(tok_fed, per_token, peak)
                table.append({"model": model, "batch": batch, "seq_max": seq, "tokens_per_seq": width,
                              "precision": prec, "fedlib_tokens_s": tok_fed, "bare_tokens_s": tok_bare,
                              "fedlib_over_bare": fed_s / bare_s, "mfu": got, "peak_flops": peak,
                              "flops_per_token": per_token, "peak_mem_mib": peak_mib, "device": name})
                rows.append(_row(f"tokens/s {model} {batch}x{seq} {prec}", round(tok_fed), "reported", True,
                                 f"bare {tok_bare:.0f}/s (fedlib/bare time {fed_s / bare_s:.2f}); MFU "
                                 f"{'n/a' if got is None else f'{100 * got:.2f}%'}; peak memory "
                                 f"{f'{peak_mib:.0f} MiB' if cuda else 'n/a'}; {width:.0f} tokens/seq"))
    pd.DataFrame(table).to_csv(c.out / "throughput.csv", index=False)
    _precision("fp32")
    return rows


def overhead(c: Any) -> list[Row]:
    """(round - compute) / clients, the fastest of rounds 2..3, at 8 and 64 clients."""
    from .. import config, runner
    from ..wire.comm import LocalComm

    rows = []
    for n in ([8, 64] if not c.tiny else [2, 4]):
        over = c.overrides(**{"model.name": "minilm", "data.max_length": 128, "client.batch_size": 16,
                              "client.local_steps": 1, "federation.num_clients": n, "federation.rounds": 3,
                              "federation.eval_every": 0, "federation.checkpoint_every": 0,
                              "data.max_train_samples": 16 * n})
        if c.tiny:
            over.update({k: v for k, v in c.overrides().items() if k.startswith(("model.", "data.max_len"))})
            over["client.batch_size"] = 4
        cfg = config.load(c.root / "params/quickstart.yaml", over)
        r = runner.run(cfg, comm=LocalComm(), progress=False).rounds.iloc[1:]
        per = ((r["round_s"] - r["compute_s"]) / r["sampled"]).min()
        rows.append(_row(f"per-client overhead ({n} clients)", round(per * 1e3, 3), "reported (ms)", True,
                         f"round {r['round_s'].min():.4f} s, training {r['compute_s'].min():.4f} s"))
    return rows


def transfer(c: Any) -> list[Row]:
    import torch

    rows = []
    n = BERT_BASE if not c.tiny else 1 << 20
    if c.device.startswith("cuda"):
        host = torch.empty(n, pin_memory=True)
        dev = torch.empty(n, device=c.device)
        for name, dst, src in (("host->device", dev, host), ("device->host", host, dev)):
            dst.copy_(src, non_blocking=True)
            torch.cuda.synchronize()
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                dst.copy_(src, non_blocking=True)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            rows.append(_row(f"pinned {name} GB/s ({n * 4 / 1e6:.0f} MB)", round(n * 4 / min(times) / 1e9, 2),
                             "reported", True, f"fastest of 5: {min(times) * 1e3:.1f} ms"))
        del host, dev
    else:
        rows.append(_row("pinned host<->device GB/s", None, "a GPU", True, "skipped on the cpu"))
    for overlap in (False, True):
        rows.append(_staging(c, overlap))
    return rows


def _staging(c: Any, overlap: bool) -> Row:
    """Two MPI ranks sharing the device, p2p aggregation: the rounds' staging seconds (copy_s)."""
    from .common import overrides_args

    over = c.overrides(**{"federation.aggregation": "p2p", "federation.overlap": overlap,
                          "federation.rounds": 3, "federation.eval_every": 0,
                          "federation.checkpoint_every": 0})
    proc = subprocess.run([c.mpiexec(), "-n", "2", sys.executable, "-m", "fedlib", "run",
                           str(c.root / "params/quickstart.yaml"), *overrides_args(over), "--quiet"],
                          capture_output=True, text=True, env=c.env(), timeout=max(5.0, c.left()))
    name = f"staging s/round, 2 ranks, overlap {'on' if overlap else 'off'}"
    if proc.returncode != 0:
        return _row(name, None, "runs", False, (proc.stderr.strip().splitlines() or ["failed"])[-1])
    r = pd.read_csv(Path(over["output_dir"]) / over["name"] / "rounds.csv").iloc[1:]
    return _row(name, round(float(r["copy_s"].mean()), 4), "reported", True,
                f"round {r['round_s'].mean():.3f} s, comm {r['comm_s'].mean():.3f} s, "
                f"{int(r['bytes_comm'].iloc[0])} bytes sent (rank 0, mean of rounds 2-3)")
