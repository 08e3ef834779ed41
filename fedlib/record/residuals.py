"""Error-feedback residuals as server state. With a 16-bit payload and error feedback each
client carries what rounding lost into its next update (fedlib.wire.codec does the rounding);
the residuals live in files under the run folder, keyed by client id and round, so any rank can
continue a client's residual (the result does not depend on the number of ranks) and a
checkpoint can name the residuals it covers. They belong beside the checkpoint: the recorder
writes their manifest into it, prunes what it no longer needs, and restores them on resume.

Each residual is model-sized float32: bert-base's 110M values x 1,000 clients is 440 GB. The
rounds' clients are drawn from (seed, round) alone, so the run knows before it starts which
clients will be sampled again: only theirs are kept (a client's last round writes nothing), and
`room` refuses a run whose residuals do not fit the file system's free space, in one line with
the number, before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..config import RunConfig
from ..hpc.store import atomic_write
from ..sim.participation import sample_clients

FLOAT = 4  # bytes per stored residual value


def keeps(cfg: RunConfig) -> bool:
    """Only error feedback on a lossy payload keeps residuals."""
    return cfg.federation.error_feedback and cfg.federation.payload_dtype != "fp32"


def last_sampled(cfg: RunConfig) -> dict[int, int]:
    """Client id -> the last round (1..federation.rounds) that samples it."""
    out: dict[int, int] = {}
    for rnd in range(1, cfg.federation.rounds + 1):
        for cid in sample_clients(cfg, rnd):
            out[cid] = rnd
    return out


def carried(cfg: RunConfig) -> int:
    """How many clients carry a residual at some point: those sampled in two rounds or more."""
    seen: dict[int, int] = {}
    for rnd in range(1, cfg.federation.rounds + 1):
        for cid in sample_clients(cfg, rnd):
            seen[cid] = seen.get(cid, 0) + 1
    return sum(n > 1 for n in seen.values())


def room(cfg: RunConfig, trainable: int, free: int | None = None) -> str | None:
    """One line when the residuals (one file per client carried, `trainable` float32 values
    each) exceed the free space where the run writes them, else None."""
    if not keeps(cfg):
        return None
    need = carried(cfg) * trainable * FLOAT
    if free is None:
        where = cfg.run_dir
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
    if need <= free:
        return None
    return (f"federation.error_feedback: the residuals need {_gb(need)} ({carried(cfg)} clients sampled "
            f"again x {trainable:,} trainable values x {FLOAT} bytes) but {cfg.output_dir} has {_gb(free)} "
            "free; sample fewer clients, train fewer parameters (model.freeze_layers, model.lora_r) or set "
            "federation.error_feedback: false")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def for_run(cfg: RunConfig) -> ResidualStore | None:
    """The run's store, keeping residuals only for clients sampled again (None: none kept)."""
    if not keeps(cfg):
        return None
    return ResidualStore(cfg.run_dir / "residuals", checkpoints=cfg.federation.checkpoint_every > 0,
                         last=last_sampled(cfg) if cfg.federation.mode == "sync" else None)


class ResidualStore:
    """Per-client float32 residuals, part of the server state. Each is written once per round as
    `<cid>.<round>.pt` (atomically) and never modified, so the state at a checkpoint of round k is
    "each client's newest file of round <= k": the checkpoint records that manifest, a resume
    deletes what came later, and files no checkpoint can need are pruned."""

    def __init__(self, folder: Path, checkpoints: bool = True, last: dict[int, int] | None = None) -> None:
        self.folder = folder
        self.checkpoints = checkpoints  # False: no resume possible, keep only each client's newest
        self.last = last  # client -> its last sampled round; None: unknown, keep every residual

    def versions(self, cid: int | None = None) -> dict[int, list[int]]:
        """cid -> rounds with a residual file, ascending."""
        out: dict[int, list[int]] = {}
        for p in self.folder.glob(f"{'*' if cid is None else cid}.*.pt"):
            c, r = p.name.split(".")[:2]
            if c.isdigit() and r.isdigit():
                out.setdefault(int(c), []).append(int(r))
        return {c: sorted(rs) for c, rs in out.items()}

    def get(self, cid: int, numel: int, rnd: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The residual `cid` carries into round `rnd` (zeros when it has none yet), on `device`."""
        rs = [r for r in self.versions(cid).get(cid, []) if r < rnd]
        if not rs:
            return torch.zeros(numel, device=device)
        return torch.load(self.folder / f"{cid}.{rs[-1]}.pt", weights_only=True, map_location=device)

    def put(self, cid: int, rnd: int, residual: torch.Tensor) -> None:
        if self.last is not None and self.last.get(cid, 0) <= rnd:  # never read again
            if not self.checkpoints:  # (with checkpoints a resume may replay this round: keep them)
                for r in self.versions(cid).get(cid, []):
                    (self.folder / f"{cid}.{r}.pt").unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{cid}.{rnd}.pt", lambda tmp: torch.save(residual.cpu(), tmp))
        if not self.checkpoints:
            for r in self.versions(cid).get(cid, []):
                if r < rnd:
                    (self.folder / f"{cid}.{r}.pt").unlink(missing_ok=True)

    def manifest(self, rnd: int) -> dict[int, int]:
        """cid -> the round of its residual as of the end of round `rnd` (for the checkpoint)."""
        out = {}
        for c, rs in self.versions().items():
            if self.last is not None and self.last.get(c, 0) <= rnd:
                continue  # sampled for the last time by round `rnd`: no later round reads it
            kept = [r for r in rs if r <= rnd]
            if kept:
                out[c] = kept[-1]
        return out

    def restore(self, manifest: dict[int, int], rnd: int | None = None) -> None:
        """Delete every file not in `manifest`, from round <= `rnd` (None: every round). After a
        checkpoint this prunes what it no longer needs; on resume it drops later rounds' files."""
        for c, rs in self.versions().items():
            for r in rs:
                if manifest.get(c) != r and (rnd is None or r <= rnd):
                    (self.folder / f"{c}.{r}.pt").unlink(missing_ok=True)
