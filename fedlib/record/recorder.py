"""The run's one writer. Everything a run leaves in its folder is written here, on rank 0: the
config header (or, on resume, the resume record), labels.json, partition.csv, the rounds and
clients CSVs (and arrivals.csv on the wall clock), the checkpoint with its error-feedback
residual manifest, the Hugging Face export and summary.json. Other ranks hold a
`NullRecorder`, whose writes do nothing, so the loops (fedlib.engine.sync, fedlib.engine.virtual)
return values and never ask which rank they run on.
The order that keeps a folder consistent lives here too: the rows a checkpoint covers are on
disk before that checkpoint is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import config
from ..learn import data
from ..sim.partition_report import report as part_report
from ..strategies import ServerState
from . import checkpoint, provenance, rundir
from . import resume as resume_rules
from .metrics import ArrivalRow, ClientRow, CsvLog, RoundRow, write_json
from .residuals import ResidualStore

if TYPE_CHECKING:
    from ..engine.context import Context
    from ..learn.models import ModelSpec

__all__ = ["METRICS", "NullRecorder", "Recorder", "Result"]

METRICS = ("eval_loss", "accuracy", "macro_f1")  # the order of Context.evaluate's tuple
Rows = Callable[[], tuple[RoundRow, Iterable[ClientRow]]]  # built only where they are written


@dataclass(frozen=True)
class Result:
    rounds: pd.DataFrame
    clients: pd.DataFrame
    summary: dict[str, Any]
    state: ServerState | None  # None when the tables came back from engines


class Recorder:
    """Rank 0's writer for one run in `cfg.run_dir`."""

    def __init__(self, cfg: config.RunConfig, ranks: int, store: ResidualStore | None,
                 aside: Path | None, progress: bool) -> None:
        self.cfg, self.ranks, self.store, self.aside, self.progress = cfg, ranks, store, aside, progress
        self.dir = cfg.run_dir
        self.prov: dict[str, Any] = {}
        self.kept: int | None = None  # the round checkpoint.pt holds
        self._pending: ServerState | None = None  # written, not yet committed
        self._logs: tuple[CsvLog, CsvLog] | None = None
        self._arrivals: CsvLog | None = None  # federation.clock: wall
        self._bar: Any = None

    @staticmethod
    def for_rank(writes: bool, cfg: config.RunConfig, ranks: int, store: ResidualStore | None,
                 aside: Path | None, progress: bool) -> Recorder:
        """The writer on the rank that `writes` (rank 0), a recorder doing nothing elsewhere."""
        return (Recorder if writes else NullRecorder)(cfg, ranks, store, aside, progress)

    def start(self, ctx: Context, state: ServerState, prov: dict[str, Any], saved: dict[str, Any] | None
              ) -> None:
        """Open the folder for the rounds after `state`: `saved` is the checkpoint's config on
        resume (None: a fresh run). The record keeps the original header and start; a resume
        is appended to it, and rows past the checkpoint's round are dropped."""
        self.prov = prov
        if saved is not None:
            if self.store is not None:  # back to the residuals the checkpoint covers
                self.store.restore(state.extra.get("residuals", {}))
            self.prov = resume_rules.record(self.dir, self.cfg, saved, prov, state.round)
            self.kept = state.round
        else:
            (self.dir / "config.yaml").write_text(provenance.header(prov) + config.dump(self.cfg))
        data.write_label_names(self.dir, ctx.data.label_names)  # export needs no data folder later
        part_report(ctx.parts, ctx.data.train.labels.cpu().numpy(), ctx.data.num_labels).to_csv(
            self.dir / "partition.csv", index=False)
        self._logs = (CsvLog(self.dir / "rounds.csv", RoundRow, self.kept),
                      CsvLog(self.dir / "clients.csv", ClientRow, self.kept))
        if self.cfg.federation.clock == "wall":
            self._arrivals = CsvLog(self.dir / "arrivals.csv", ArrivalRow, self.kept)
        sync = self.cfg.federation.mode == "sync"
        self._bar = tqdm(total=self.cfg.federation.rounds, initial=state.round, desc=self.cfg.name,
                         disable=not self.progress, unit="round" if sync else "step", dynamic_ncols=True)

    def _with_residuals(self, state: ServerState) -> ServerState:
        """The state to checkpoint: with error feedback, it names each client's residual file."""
        if self.store is None:
            return state
        return replace(state, extra={**state.extra, "residuals": self.store.manifest(state.round)})

    def write_checkpoint(self, state: ServerState) -> None:
        """Write (not commit) the checkpoint of `state`: the slow part, timed in its round."""
        self._pending = self._with_residuals(state)
        checkpoint.write(self.dir, self._pending, self.cfg.to_dict())

    def write_arrivals(self, rows: Iterable[ArrivalRow]) -> None:
        """Append a server step's arrivals (wall clock), before `write_round` commits its checkpoint."""
        assert self._arrivals is not None
        for r in rows:
            self._arrivals.write(r)

    def write_round(self, rows: Rows) -> None:
        """Append a round's rows, then commit the checkpoint written for it, if any."""
        assert self._logs is not None
        row, clients = rows()
        rlog, clog = self._logs
        rlog.write(row)
        for c in clients:
            clog.write(c)
        if self._pending is not None:
            self._commit()
        rundir.discard(self.aside)  # the folder holds one run again
        self.aside = None
        if self.cfg.federation.mode == "sync":
            self._bar.set_postfix(loss=f"{row.train_loss:.3f}",
                                  acc="-" if row.accuracy is None else f"{row.accuracy:.3f}")
        else:
            self._bar.set_postfix(loss=f"{row.train_loss:.3f}", t=f"{row.virtual_s:.0f}")
        self._bar.update(1)

    def _commit(self) -> None:
        """Make the rows durable, then the checkpoint that covers them, then prune residuals."""
        assert self._logs is not None and self._pending is not None
        saved, self._pending = self._pending, None
        for log in (*self._logs, *([self._arrivals] if self._arrivals else [])):
            log.sync()
        checkpoint.commit(self.dir)
        self.kept = saved.round
        if self.store is not None:
            self.store.restore(saved.extra["residuals"], saved.round)  # prune what it does not need

    def checkpoint_now(self, state: ServerState) -> None:
        """Checkpoint a round whose rows are already written (a stop between rounds), unless
        the checkpoint already holds it."""
        if self.kept != state.round:
            self.write_checkpoint(state)
            self._commit()

    def save(self, state: ServerState) -> None:
        """Write and commit the checkpoint of `state` at once (a stop before a round)."""
        checkpoint.save(self.dir, self._with_residuals(state), self.cfg.to_dict())

    def note(self, message: str) -> None:
        tqdm.write(f"{self.cfg.name}: {message}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        for log in (*(self._logs or ()), *([self._arrivals] if self._arrivals else [])):
            log.close()

    def export(self, weights: torch.Tensor, label_names: tuple[str, ...] | list[str],
               spec: ModelSpec | None = None) -> None:
        """The Hugging Face folder of the final model, when federation.export asks for it."""
        if not self.cfg.federation.export:
            return
        from . import export

        if why := export.unsupported(self.cfg):
            self.note(f"no Hugging Face export: {why}")
        else:
            export.write(self.cfg, weights, label_names, self.dir / export.FOLDER, spec=spec)

    def summary(self, ctx: Context, state: ServerState, stopped: str | None, diverged: bool,
                kept: tuple[float, float, float] | None) -> Result:
        """summary.json from the files the run wrote; `kept`: the scores of the state a
        diverged run kept (the diverged round's go beside them)."""
        rounds = pd.read_csv(self.dir / "rounds.csv")
        clients = pd.read_csv(self.dir / "clients.csv")
        scored = rounds.dropna(subset=["accuracy"])
        last = scored.iloc[-1] if len(scored) else {}
        if diverged:
            last = dict(zip(METRICS, kept, strict=True)) if kept is not None else {}
        cfg = self.cfg
        summary = {
            "name": cfg.name, "rounds": int(state.round), "ranks": self.ranks,
            **{k: _finite(last[k]) if k in last else None for k in METRICS},
            "params": ctx.flat.numel,
            "partition_tv_mean": float(pd.read_csv(self.dir / "partition.csv")["tv"].mean()),
            "majority_rate": _majority_rate(ctx.data.eval),
            "eval_examples": len(ctx.data.eval),  # scored, of eval_split_size in the split
            "eval_split_size": ctx.data.eval_split_size or len(ctx.data.eval),
            "mean_round_s": float(rounds["round_s"].mean()),
            "total_s": float(rounds["round_s"].sum()),
            "bytes_comm": int(rounds["bytes_comm"].sum()),
            "stopped": stopped,
            "diverged": diverged,
            **({"diverged_round": {"round": int(rounds["round"].iloc[-1]),
                                   **{k: _finite(rounds[k].iloc[-1]) for k in METRICS}}} if diverged else {}),
            **{k: float(rounds[k].iloc[-1]) for k in ("epsilon", "eps_max") if rounds[k].notna().any()},
            **({"delta": cfg.privacy.delta} if cfg.privacy.mode != "none" else {}),  # ε is at this δ
            "provenance": {**self.prov, "ended": provenance.utc_now()},
        }
        write_json(self.dir / "summary.json", summary)
        return Result(rounds, clients, summary, state)


class NullRecorder(Recorder):
    """What every rank but 0 holds: the same calls, nothing written, empty tables returned."""

    def start(self, ctx: Context, state: ServerState, prov: dict[str, Any], saved: dict[str, Any] | None
              ) -> None:
        pass

    def write_checkpoint(self, state: ServerState) -> None:
        pass

    def write_arrivals(self, rows: Iterable[ArrivalRow]) -> None:
        pass

    def write_round(self, rows: Rows) -> None:
        pass

    def checkpoint_now(self, state: ServerState) -> None:
        pass

    def save(self, state: ServerState) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def export(self, weights: torch.Tensor, label_names: tuple[str, ...] | list[str],
               spec: ModelSpec | None = None) -> None:
        pass

    def summary(self, ctx: Context, state: ServerState, stopped: str | None, diverged: bool,
                kept: tuple[float, float, float] | None) -> Result:
        return Result(pd.DataFrame(), pd.DataFrame(), {}, state)


def _finite(x: Any) -> float | None:
    """A metric for summary.json: None for a missing or non-finite value (strict JSON)."""
    return float(x) if x is not None and np.isfinite(float(x)) else None


def _majority_rate(split: data.TextSplit) -> float:
    return float(torch.bincount(split.labels).max() / len(split))
