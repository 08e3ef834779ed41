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


def test_rerun_and_concurrent_run_refuse_naming_why(tmp_path, capsys):
    import json
    import socket

    cfg = _tiny_yaml(tmp_path, name="same")
    code, err = _main(capsys, "run", cfg, "--quiet")
    assert code == 0, err
    summary = (tmp_path / "same" / "summary.json").read_text()
    code, again = _main(capsys, "run", cfg, "--quiet")
    assert code == 2 and "Traceback" not in again
    assert f"fedlib: error: {tmp_path / 'same'} already holds the results of an earlier run" in again
    assert (tmp_path / "same" / "summary.json").read_text() == summary
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "same" / ".lock").write_text(json.dumps(
            {"pid": holder.pid, "host": socket.gethostname(), "started": "2026-11-25T17:00:00+00:00"}))
        code, busy = _main(capsys, "run", cfg, "--quiet", "--overwrite")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "Traceback" not in busy
    assert f"in use by another run: pid {holder.pid} on host {socket.gethostname()}" in busy
    code, err = _main(capsys, "run", cfg, "--quiet", "--overwrite")  # the holder is gone: stale, replaced
    assert code == 0, err
    print(again, busy, sep="\n")  # what a user sees, in the report of a failure below


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

    from fedlib.engine import rounds
    from fedlib.strategies import server_step

    monkeypatch.setattr(rounds, "server_step", lambda s, d, c: replace(server_step(s, d, c),
                                                                        weights=s.weights * float("inf")))
    code, err = _main(capsys, "run", _tiny_yaml(tmp_path, name="div"), "--quiet")
    assert code == 4 and "diverged in round 1: the global weights are not finite" in err


# ---- a resume keeps the record; requeue; --resume auto ----

def test_a_resume_that_runs_nothing_keeps_config_and_start_time(tmp_path, capsys):
    import json

    cfg = _tiny_yaml(tmp_path, name="rec", **{"federation.rounds": 3, "federation.export": False})
    assert _main(capsys, "run", cfg, "--quiet")[0] == 0
    run_dir = tmp_path / "rec"
    before = (run_dir / "config.yaml").read_text()
    started = json.loads((run_dir / "summary.json").read_text())["provenance"]["started"]
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=1", "--quiet")
    assert code == 0, err
    after = (run_dir / "config.yaml").read_text()
    assert after.startswith(before) and "rounds: 3" in after  # header and body as they were
    (entry,) = after[len(before):].splitlines()
    assert entry.startswith("# resumed: ")
    rec = json.loads(entry.removeprefix("# resumed: "))
    assert rec["from_round"] == 3 and rec["changed"] == {"federation.rounds": [3, 1]}
    prov = json.loads((run_dir / "summary.json").read_text())["provenance"]
    assert prov["started"] == started and prov["resumed"] == rec["at"]
    code, err = _main(capsys, "run", cfg, "--resume", "--overwrite", "--quiet")
    assert code == 2 and "--resume and --overwrite contradict each other" in err
    assert (run_dir / "config.yaml").read_text() == after


def test_a_moved_folder_resumes_and_a_refusal_lists_every_resumable_key(tmp_path, capsys):
    from fedlib.record.resume import RESUMABLE

    cfg = _tiny_yaml(tmp_path, name="mv", **{"federation.export": False})
    assert _main(capsys, "run", cfg, "--quiet")[0] == 0
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "mv").rename(tmp_path / "elsewhere" / "mv")
    moved = ["--set", f"output_dir={tmp_path / 'elsewhere'}", "--quiet"]
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "federation.rounds=2", *moved)
    assert code == 0, err
    import pandas as pd

    assert list(pd.read_csv(tmp_path / "elsewhere" / "mv" / "rounds.csv")["round"]) == [1, 2]
    code, err = _main(capsys, "run", cfg, "--resume", "--set", "seed=7", *moved)
    assert code == 2 and "--resume: seed differ from the checkpoint" in err
    assert f"only {', '.join(sorted(RESUMABLE))} may change on resume" in err
    assert {"output_dir", "name", "federation.rounds", "federation.resume", "threads"} <= RESUMABLE


def test_resume_auto_starts_fresh_or_continues(tmp_path, capsys):
    import pandas as pd

    cfg = _tiny_yaml(tmp_path, name="auto", **{"federation.export": False, "federation.resume": "auto"})
    assert _main(capsys, "run", cfg, "--quiet")[0] == 0  # nothing there: a fresh start
    code, err = _main(capsys, "run", cfg, "--set", "federation.rounds=2", "--quiet")  # requeued, longer
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "auto" / "rounds.csv")["round"]) == [1, 2]
    code, err = _main(capsys, "run", "--resume", cfg, "--set", "federation.resume=never", "--quiet")
    assert code == 0, err  # `--resume FILE`: the file, not a mode
    code, err = _main(capsys, "run", cfg, "--set", "federation.resume=never", "--quiet")
    assert code == 2 and "already holds the results of an earlier run" in err


def test_resume_after_a_failed_overwrite_says_where_the_checkpoint_is(tmp_path, capsys, monkeypatch):
    from fedlib.engine import rounds
    from fedlib.record import rundir

    cfg = _tiny_yaml(tmp_path, name="ow", **{"federation.export": False})
    assert _main(capsys, "run", cfg, "--quiet")[0] == 0
    run_dir = tmp_path / "ow"
    with monkeypatch.context() as m:  # round 1 fails, after the old files were moved aside
        m.setattr(rounds, "play", lambda *a: (_ for _ in ()).throw(ValueError("boom")))
        assert _main(capsys, "run", cfg, "--overwrite", "--quiet")[0] == 2
    (first,) = run_dir.glob(rundir.PREVIOUS + "*")
    code, err = _main(capsys, "run", cfg, "--resume", "--quiet")
    assert code == 2 and f"no checkpoint to resume from; the run an --overwrite replaced left its " \
                         f"checkpoint in {first / 'checkpoint.pt'}" in err
    assert _main(capsys, "run", cfg, "--overwrite", "--quiet")[0] == 0  # a successful replacement
    assert not list(run_dir.glob(rundir.PREVIOUS + "*"))  # cleans what the failed one left aside
