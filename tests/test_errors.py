"""User errors end in one line, `fedlib: ...`, and exit 2 — never a traceback. Each case runs
`python -m fedlib` as a user would (a subprocess), so anything printed on the way out counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedlib.config.loader import _nest
from tests.conftest import ROOT, tiny_overrides

SMALL = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}


def _fedlib(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDLIB_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-m", "fedlib", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)


def _yaml(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_nest(tiny_overrides(tmp_path, **{"federation.rounds": 1, **extra}))))
    return path


def _one_line(p: subprocess.CompletedProcess[str], message: str) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == message, p.stderr
    assert p.returncode == 2


@pytest.mark.parametrize(("extra", "message"), [
    ({"model.name": "bad name!!"}, "model.name='bad name!!': not a preset ("),
    ({"model.overrides": {"num_hidden_layers": 1, "num_hiden_layers": 2, **SMALL}},
     "model.overrides.num_hiden_layers: not a key of BertConfig (did you mean 'num_hidden_layers'?)"),
    ({"model.overrides": {"num_hidden_layers": -2, **SMALL}},
     "model.overrides.num_hidden_layers: must be an integer >= 1, got -2"),
])
def test_run_with_a_bad_model_is_one_line(tmp_path, extra, message):
    p = _fedlib(tmp_path, "run", str(_yaml(tmp_path, **extra)), "--quiet")
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fedlib: config error: {message}"), p.stderr
    assert p.returncode == 2


def test_offline_hub_id_not_cached_is_one_line(tmp_path):
    p = _fedlib(tmp_path, "run", str(_yaml(tmp_path, **{"model.name": "someorg/not-cached"})), "--quiet",
                HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    _one_line(p, "fedlib: config error: model.name='someorg/not-cached': not a preset or a folder, and as a "
                 f"hub id not in the Hugging Face cache {tmp_path / 'hub'}; HF_HUB_OFFLINE=1 forbids "
                 "downloading it (download it where the network is reachable)")


def test_yaml_that_is_not_utf8_or_repeats_a_key_is_one_line(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: r\u00e9sum\u00e9\n".encode("latin-1"))
    _one_line(_fedlib(tmp_path, "run", str(bad)),
              f"fedlib: config error: {bad}:1: not UTF-8 text (byte 7: b'\\xe9'); save the file as UTF-8")
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nclient:\n  lr: 0.01\n  lr: 0.1\n")
    _one_line(_fedlib(tmp_path, "run", str(dup)),
              f"fedlib: config error: {dup}:4: client.lr: duplicate key (also on line 3); keep one")


def test_export_into_a_file_is_one_line(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_text("mine")
    _one_line(_fedlib(tmp_path, "export", str(tmp_path / "some-run"), str(target)),
              f"fedlib: error: {target}: is a file; export writes a folder, so give a path that does "
              "not exist")
    assert target.read_text() == "mine"
