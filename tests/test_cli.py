import subprocess
import sys

from tests.conftest import ROOT


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedlib", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_bad_override_exits_2_naming_the_key():
    p = _cli("run", "params/quickstart.yaml", "--set", "client.lr=0")
    assert p.returncode == 2
    assert "config error: client.lr: must be > 0" in p.stderr


def test_bad_yaml_key_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfederation:\n  num_client: 3\n")
    p = _cli("run", str(bad))
    assert p.returncode == 2
    assert f"{bad}:3: federation.num_client: unknown key (did you mean 'num_clients'?)" in p.stderr


def test_config_keys_lists_every_section():
    out = _cli("config-keys").stdout
    for key in ("federation.aggregation", "client.mu", "strategy.algorithm", "data.name"):
        assert f"`{key}`" in out


# ---- results never lost or mixed; one-line errors (in-process: main() returns the exit code) ----

def _tiny_yaml(tmp_path, **extra):
    import yaml

    from fedlib.config.loader import _nest
    from tests.conftest import tiny_overrides

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_nest(tiny_overrides(tmp_path, **{"federation.rounds": 1, **extra}))))
    return str(path)


def _main(capsys, *args):
    from fedlib.cli import main

    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def test_rerun_and_concurrent_run_refuse_naming_why(tmp_path):
    import json
    import socket

    cfg = _tiny_yaml(tmp_path, name="same")
    first = _cli("run", cfg, "--quiet")
    assert first.returncode == 0, first.stderr
    summary = (tmp_path / "same" / "summary.json").read_text()
    again = _cli("run", cfg, "--quiet")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"fedlib: error: {tmp_path / 'same'} already holds the results of an earlier run" in again.stderr
    assert (tmp_path / "same" / "summary.json").read_text() == summary
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "same" / ".lock").write_text(json.dumps(
            {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-11-25T17:00:00+00:00"}))
        busy = _cli("run", cfg, "--quiet", "--overwrite")
    finally:
        holder.kill()
        holder.wait()
    assert busy.returncode == 2 and "Traceback" not in busy.stderr
    assert f"in use by another run: pid {holder.pid} on host {socket.gethostname()}" in busy.stderr
    over = _cli("run", cfg, "--quiet", "--overwrite")  # the holder is gone: stale lock, replaced
    assert over.returncode == 0, over.stderr
    print(again.stderr, busy.stderr, sep="\n")  # pytest -s shows what a user sees


def test_one_line_errors_name_the_culprit(tmp_path, capsys):
    code, err = _main(capsys, "run", str(tmp_path))
    assert code == 2 and f"{tmp_path}: is a directory" in err
    for seed in (-1, 2**64):
        code, err = _main(capsys, "run", _tiny_yaml(tmp_path), "--set", f"seed={seed}")
        assert code == 2 and "config error: seed: must be in [0, 2**64)" in err
    for name in ("..", ".", "a/../../x", "/abs"):
        code, err = _main(capsys, "run", _tiny_yaml(tmp_path), "--set", f"name={name}")
        assert code == 2 and "config error: name: must be a non-empty folder name inside output_dir" in err
    for key in ("participation.speed_max", "strategy.server_lr"):
        code, err = _main(capsys, "run", _tiny_yaml(tmp_path), "--set", f"{key}=.inf")
        assert code == 2 and f"config error: {key}: must be a finite number" in err


def test_non_utf8_data_line_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "labels.json").write_text('["a", "b"]')
    good = '{"text": "fine", "label": 0}\n'
    (data / "train.jsonl").write_bytes((good * 2).encode() + b'{"text": "caf\xe9", "label": 1}\n')
    (data / "test.jsonl").write_text(good)
    code, err = _main(capsys, "run", _tiny_yaml(tmp_path, **{"data.name": str(data)}))
    assert code == 2 and f"{data / 'train.jsonl'}:3: not UTF-8" in err


def test_bad_checkpoint_or_rounds_csv_on_resume_names_the_file(tmp_path, capsys):
    import torch

    cfg = _tiny_yaml(tmp_path, name="r")
    assert _main(capsys, "run", cfg, "--quiet")[0] == 0
    run_dir = tmp_path / "r"
    good = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "rounds.csv").write_text("round,bogus\n1,2\n")
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=2", "--quiet")
    assert code == 2 and f"{run_dir / 'rounds.csv'}: malformed metrics file" in err
    (run_dir / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=2", "--quiet")
    assert code == 2 and f"{run_dir / 'checkpoint.pt'}: not a readable fedlib checkpoint" in err
    torch.save({"weights": torch.zeros(1), "evil": ValueError("x")}, run_dir / "checkpoint.pt")
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=2", "--quiet")
    assert code == 2 and f"{run_dir / 'checkpoint.pt'}: not a readable fedlib checkpoint" in err
    torch.save({"weights": torch.zeros(1)}, run_dir / "checkpoint.pt")
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=2", "--quiet")
    assert code == 2 and f"{run_dir / 'checkpoint.pt'}: not a fedlib checkpoint" in err


def test_divergence_exits_non_zero(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from fedlib import round as rounds
    from fedlib.strategies import server_step

    monkeypatch.setattr(rounds, "server_step", lambda s, d, c: replace(server_step(s, d, c),
                                                                        weights=s.weights * float("inf")))
    code, err = _main(capsys, "run", _tiny_yaml(tmp_path, name="div"), "--quiet")
    assert code == 4 and "diverged in round 1: the global weights are not finite" in err
