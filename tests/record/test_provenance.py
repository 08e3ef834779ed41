"""A run records what produced its numbers (summary.json, config.yaml header, sweep rows)."""

import json
import platform
import socket
import subprocess
from datetime import datetime
from pathlib import Path

import opacus
import peft
import torch
import transformers
import yaml

from fedlib import __version__, runner
from fedlib.lab import sweep
from fedlib.record import provenance
from tests.conftest import ROOT

KEYS = {"fedlib", "git_commit", "git_dirty", "python", "torch", "transformers", "opacus", "peft",
        "mpi4py", "mpi_library", "hosts", "ranks", "threads", "device", "started", "ended"}


def test_summary_and_config_header_record_versions_hosts_and_times(tiny_cfg):
    cfg = tiny_cfg(name="prov", **{"federation.rounds": 1})
    res = runner.run(cfg, progress=False)
    prov = json.loads((cfg.run_dir / "summary.json").read_text())["provenance"]
    assert set(prov) == KEYS and prov == res.summary["provenance"]
    import mpi4py

    assert (prov["fedlib"], prov["python"], prov["torch"], prov["transformers"], prov["opacus"],
            prov["peft"], prov["mpi4py"]) == (__version__, platform.python_version(), torch.__version__,
                                               transformers.__version__, opacus.__version__,
                                               peft.__version__, mpi4py.__version__)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    assert prov["git_commit"] == head.strip() and isinstance(prov["git_dirty"], bool)
    assert prov["hosts"] == [socket.gethostname()] and prov["ranks"] == 1 and prov["threads"] == 1
    assert prov["device"] == "cpu"
    assert datetime.fromisoformat(prov["started"]) <= datetime.fromisoformat(prov["ended"])
    text = (cfg.run_dir / "config.yaml").read_text()
    assert f"# git_commit: {head.strip()}\n" in text and f"# torch: {torch.__version__}\n" in text
    assert yaml.safe_load(text)["name"] == "prov"  # still a loadable config


def test_mpi_library_version_when_mpi_is_loaded():
    from mpi4py import MPI

    line = provenance.mpi_library()
    assert line and line in MPI.Get_library_version() and "\x00" not in line and "\n" not in line


def test_git_is_absent_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "SOURCE", tmp_path)
    assert provenance.git() == {}


def test_sweep_rows_carry_each_runs_provenance_and_folder(tiny_cfg):
    df = sweep.run_grid(tiny_cfg(name="sw", **{"federation.rounds": 1}), [{"client.lr": 1e-3}],
                        progress=False)
    assert df["prov_torch"].iloc[0] == torch.__version__ and df["prov_git_commit"].iloc[0]
    assert json.loads((Path(df["run_dir"].iloc[0]) / "summary.json").read_text())["name"] == "sw-00-0.001"
