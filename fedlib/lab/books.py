"""The lab's notebooks and their parameter files: where they are, which exist, in what order
they run (the summary last), and the parameters one profile gives one notebook. Reproducing
them (`reproduce`), rendering their record (`record`) and checking it is current (`stale`) all
start from here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..hpc.store import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
PARAMS = REPO_ROOT / "params"
SUMMARY = "99_summary"


def available(notebooks: Path = NOTEBOOKS) -> list[str]:
    names = sorted(p.stem for p in notebooks.glob("[0-9][0-9]_*.ipynb"))
    return [n for n in names if n != SUMMARY] + ([SUMMARY] if SUMMARY in names else [])


def parameters(profile: str, name: str, params: Path = PARAMS) -> dict:
    path = params / profile / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no parameters for notebook {name} in profile {profile!r}")
    return yaml.safe_load(path.read_text()) or {}
