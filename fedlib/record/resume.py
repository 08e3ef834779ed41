"""What a resumed run may change, and how it keeps the record. A run's identity is everything
that shapes its numbers; where its folder lives (`output_dir`, `name`: a folder moved to
another output_dir resumes) and how it is executed (threads, device, comm backend, chunking,
how often it evaluates, checkpoints or exports, how many rounds in total) are not. A resume
never rewrites the record of what ran: `config.yaml` keeps its original provenance header and
gets a `# resumed:` line per resume; its body changes only when the resume runs more rounds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import config
from ..hpc.store import atomic_write
from . import provenance

RESUMABLE = frozenset({
    "name", "output_dir", "threads", "device", "federation.rounds", "federation.eval_every",
    "federation.checkpoint_every", "federation.export", "federation.backend", "federation.chunk_mb",
    "federation.resume",
})
FILE = "config.yaml"
ENTRY = "# resumed: "


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "overrides":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_keys(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, besides those a resumed run may change."""
    a, b = _flat(saved), _flat(now)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE)


def check(saved: dict[str, Any], cfg: config.RunConfig, run_dir: Path) -> None:
    """Refuse a resume whose configuration would make a different run, naming what may change."""
    if changed := changed_keys(saved, cfg.to_dict()):
        raise config.ConfigError(f"--resume: {', '.join(changed)} differ from the checkpoint in {run_dir}; "
                                 f"only {', '.join(sorted(RESUMABLE))} may change on resume")
    before = saved.get("federation", {}).get("rounds", cfg.federation.rounds)
    if cfg.federation.error_feedback and cfg.federation.rounds > before:
        raise config.ConfigError(
            f"--resume: federation.rounds grows from {before} to {cfg.federation.rounds} with "
            "federation.error_feedback: the run kept residuals only for clients its "
            f"{before} rounds sample again; run the longer schedule from the start")


def record(run_dir: Path, cfg: config.RunConfig, saved: dict[str, Any], prov: dict[str, Any],
           at_round: int) -> dict[str, Any]:
    """Append this resume to `config.yaml` and return the provenance the summary should carry:
    the original start time, and when this resume started."""
    path = run_dir / FILE
    text = path.read_text() if path.is_file() else provenance.header(prov) + config.dump(cfg)
    lines = text.splitlines(keepends=True)
    n_head = next((i for i, s in enumerate(lines) if not s.startswith("#")), len(lines))
    n_tail = next((i for i, s in enumerate(reversed(lines)) if not s.startswith(ENTRY)), len(lines))
    head, body, tail = lines[:n_head], lines[n_head:len(lines) - n_tail], lines[len(lines) - n_tail:]
    started = next((s.split(": ", 1)[1].strip() for s in head if s.startswith("# started: ")),
                   prov["started"])
    a, b = _flat(saved), _flat(cfg.to_dict())
    changed = {k: [a.get(k), b.get(k)] for k in sorted(RESUMABLE) if a.get(k) != b.get(k)}
    if at_round < cfg.federation.rounds:  # more rounds will run: the body describes them
        body = [config.dump(cfg)]
    entry = {"at": prov["started"], "from_round": at_round, "ranks": prov.get("ranks"),
             "hosts": prov.get("hosts"), "changed": changed}
    atomic_write(path, "".join(head + body + tail) + ENTRY + json.dumps(entry, default=str) + "\n")
    return {**prov, "started": started, "resumed": prov["started"]}
