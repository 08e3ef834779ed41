"""Error-feedback residuals as server state. With a 16-bit payload and error feedback each
client carries what rounding lost into its next update (fedlib.wire.codec does the rounding);
the residuals live in files under the run folder, keyed by client id and round, so any rank can
continue a client's residual (the result does not depend on the number of ranks) and a
checkpoint can name the residuals it covers. They belong beside the checkpoint: the recorder
writes their manifest into it, prunes what it no longer needs, and restores them on resume.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig
from ..hpc.store import atomic_write


def for_run(cfg: RunConfig) -> ResidualStore | None:
    """The run's store: only error feedback on a lossy payload keeps residuals."""
    fed = cfg.federation
    if not (fed.error_feedback and fed.payload_dtype != "fp32"):
        return None
    return ResidualStore(cfg.run_dir / "residuals", checkpoints=fed.checkpoint_every > 0)


class ResidualStore:
    """Per-client float32 residuals, part of the server state. Each is written once per round as
    `<cid>.<round>.pt` (atomically) and never modified, so the state at a checkpoint of round k is
    "each client's newest file of round <= k": the checkpoint records that manifest, a resume
    deletes what came later, and files no checkpoint can need are pruned."""

    def __init__(self, folder: Path, checkpoints: bool = True) -> None:
        self.folder = folder
        self.checkpoints = checkpoints  # False: no resume possible, keep only each client's newest

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
