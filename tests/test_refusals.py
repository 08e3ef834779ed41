"""Nothing touched before the input is valid (issue 29 §3): the held-out bad inputs that got a
traceback, a raw errno or a silent wrong run now get one line (and exit 2 from the CLI), and a
failed --overwrite leaves the finished run where it was. In process (`cli.main`), so fast."""

import json
import os

import pandas as pd
import pytest

from fedlib import cli, config, runner
from fedlib.config import ConfigError
from fedlib.engine import stop
from fedlib.record.rundir import PREVIOUS, RunDirError

WALL = {"federation.mode": "fedbuff", "federation.clock": "wall", "federation.concurrency": 4,
        "federation.buffer_size": 2, "federation.rounds": 2}


def test_a_failed_overwrite_leaves_the_finished_run_in_place(tiny_cfg):
    cfg = tiny_cfg(name="done", **{"federation.rounds": 1, "federation.export": False})
    runner.run(cfg, progress=False)
    before = sorted(p.name for p in cfg.run_dir.iterdir())
    bad = config.replace(cfg, **{"model.name": str(cfg.run_dir / "nowhere")})
    with pytest.raises(ConfigError, match="model.name="):
        runner.run(bad, progress=False, overwrite=True)
    assert sorted(p.name for p in cfg.run_dir.iterdir()) == before  # nothing moved into .previous-*
    assert not list(cfg.run_dir.glob(PREVIOUS + "*"))
    assert pd.read_csv(cfg.run_dir / "rounds.csv")["round"].tolist() == [1]


def test_a_budget_that_cannot_pay_for_round_one_is_refused_up_front(tiny_cfg):
    """Before: exit 0 after 0 rounds. DP-SGD at σ = 1 spends 3.495 in round 1 here."""
    cfg = tiny_cfg(name="broke", **{"privacy.mode": "sample", "privacy.noise_multiplier": 1.0,
                                    "privacy.epsilon_budget": 1.0})
    with pytest.raises(ConfigError, match=r"^privacy.epsilon_budget=1.0: cannot pay for the first round: "
                                          r"privacy budget: round 1 would bring client \d's epsilon to"):
        runner.run(cfg, progress=False)
    assert not (cfg.run_dir / "rounds.csv").exists()
    virtual = tiny_cfg(name="broke_async", **{"privacy.mode": "sample", "privacy.noise_multiplier": 1.0,
                                              "privacy.epsilon_budget": 1.0, "federation.mode": "fedbuff",
                                              "federation.concurrency": 2})
    with pytest.raises(ConfigError, match="cannot pay for the first server step"):
        runner.run(virtual, progress=False)


def test_replay_refuses_a_tampered_log_in_one_line_and_a_mismatch_has_its_own_status(tiny_cfg, capsys):
    cfg = tiny_cfg(name="w", **WALL)
    runner.run(cfg, progress=False)
    log = pd.read_csv(cfg.run_dir / "arrivals.csv")
    capsys.readouterr()  # the run's own output

    def replay(rows: pd.DataFrame) -> tuple[int, str]:
        rows.to_csv(cfg.run_dir / "arrivals.csv", index=False)
        code = cli.main(["replay", str(cfg.run_dir)])
        return code, capsys.readouterr().err

    code, err = replay(log.assign(from_version=[99] + log["from_version"].tolist()[1:]))
    assert code == stop.USAGE and err.count("\n") == 1
    assert "version 1's update from client" in err and "trained from version 99, which the run had not" in err
    code, err = replay(log.rename(columns={"from_version": "from"}))
    assert code == stop.USAGE and err.count("\n") == 1
    assert "not an arrivals log: no column from_version" in err
    code, err = replay(log.assign(client_id=[42] + log["client_id"].tolist()[1:]))
    assert code == stop.USAGE and "applies an update of client 42, but the run has clients 0-5" in err
    other = (log["client_id"].iloc[0] + 1) % 6  # a client the log could name: another model
    code, _ = replay(log.assign(client_id=[other] + log["client_id"].tolist()[1:]))
    assert code == stop.REPLAY_MISMATCH == 5
    assert replay(log)[0] == stop.OK


def test_a_section_given_as_a_scalar_is_refused_with_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\nclient: 5\n")
    with pytest.raises(ConfigError, match=r"run.yaml:2: client: must be a mapping \(a section of client.\* "
                                          r"keys\), got 5; so client.lr cannot go into it"):
        config.load(path, {"client.lr": 0.1})
    with pytest.raises(ConfigError, match="client: must be a mapping"):
        config.load(path)


def test_export_of_a_folder_without_a_checkpoint_says_so(tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg(name="nock", **{"federation.rounds": 1, "federation.checkpoint_every": 0})
    runner.run(cfg, progress=False)
    capsys.readouterr()
    assert cli.main(["export", str(cfg.run_dir), str(tmp_path / "out")]) == stop.USAGE
    err = capsys.readouterr().err
    assert "checkpoint.pt: no checkpoint to export (the run wrote none" in err and "resume" not in err
    assert err.count("\n") == 1 and f"{cfg.run_dir / 'model'}" in err


def test_a_dangling_symlink_as_run_folder_is_refused_in_one_line(tiny_cfg, tmp_path):
    cfg = tiny_cfg(name="link")
    cfg.run_dir.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "gone", cfg.run_dir)
    with pytest.raises(RunDirError, match=rf"link: is a symbolic link to {tmp_path / 'gone'}, which does not "
                                          "exist; create its target or remove the link"):
        runner.run(cfg, progress=False)


def test_an_output_path_inside_a_file_is_refused_in_one_line(tiny_cfg, tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    cfg = tiny_cfg(name="x", output_dir=str(tmp_path / "file.txt" / "sub"))
    with pytest.raises(RunDirError, match=rf"{tmp_path / 'file.txt'} is a file, not a folder"):
        runner.run(cfg, progress=False)
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def test_the_cli_says_each_refusal_in_one_line(tiny_cfg, tmp_path, capsys):
    """The run command's view of two of them: exit 2, one `fedlib: ...` line."""
    (tmp_path / "f").write_text("")
    assert cli.main(["run", "--quiet", "--set", f"output_dir={json.dumps(str(tmp_path / 'f'))}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedlib: error: ") and err.count("\n") == 1 and "is a file, not a folder" in err
