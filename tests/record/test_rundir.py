"""Results are never lost or mixed: the run-folder lock, --overwrite, rows before checkpoints,
error-feedback residuals in the checkpoint, divergence stops, strict summary.json."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import pytest
import torch

from fedlib import config, runner
from fedlib.engine import rounds
from fedlib.lab import sweep
from fedlib.record import checkpoint, rundir
from fedlib.strategies import server_step


def _files(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}


def test_rerun_refuses_and_keeps_the_earlier_results(tiny_cfg):
    cfg = tiny_cfg(name="same", **{"federation.rounds": 1})
    runner.run(cfg, progress=False)
    before = _files(cfg.run_dir)
    with pytest.raises(rundir.RunDirError, match="already holds the results of an earlier run.*--overwrite"):
        runner.run(config.replace(cfg, **{"federation.rounds": 2}), progress=False)
    assert _files(cfg.run_dir) == before
    assert not (cfg.run_dir / ".lock").exists()


def test_a_live_lock_names_pid_and_host_and_a_dead_one_is_taken_over(tiny_cfg):
    cfg = tiny_cfg(name="busy", **{"federation.rounds": 1})
    cfg.run_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (cfg.run_dir / ".lock").write_text(json.dumps(
            {"pid": other.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}))
        with pytest.raises(rundir.RunDirError, match=f"pid {other.pid} on host {socket.gethostname()}"):
            runner.run(cfg, progress=False)
        assert not (cfg.run_dir / "rounds.csv").exists()
    finally:
        other.kill()
        other.wait()
    runner.run(cfg, progress=False)  # the holder is gone: its stale lock is taken over
    assert (cfg.run_dir / "summary.json").is_file() and not (cfg.run_dir / ".lock").exists()


def test_overwrite_replaces_cleanly(tiny_cfg):
    cfg = tiny_cfg(name="ow", **{"federation.rounds": 3})
    runner.run(cfg, progress=False)
    new = config.replace(cfg, **{"federation.rounds": 1})
    res = runner.run(new, progress=False, overwrite=True)
    assert list(pd.read_csv(cfg.run_dir / "rounds.csv")["round"]) == [1] == list(res.rounds["round"])
    assert torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)["round"] == 1
    assert not list(cfg.run_dir.glob(rundir.PREVIOUS + "*"))  # old files deleted after round 1


def test_overwrite_that_fails_in_round_one_keeps_the_old_files_aside(tiny_cfg, monkeypatch):
    """The input was valid, so the folder was cleared; round 1 fails: the replaced run's files
    wait in .previous-* (a failure before that leaves them in place: tests/test_refusals.py)."""
    cfg = tiny_cfg(name="owf", **{"federation.rounds": 1})
    runner.run(cfg, progress=False)
    old = _files(cfg.run_dir)
    monkeypatch.setattr(rounds, "play", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        runner.run(cfg, progress=False, overwrite=True)
    (aside,) = cfg.run_dir.glob(rundir.PREVIOUS + "*")
    assert _files(aside) == old and pd.read_csv(cfg.run_dir / "rounds.csv").empty


def test_sweeps_never_share_a_folder(tmp_path):
    a, b = sweep.fresh_dir(tmp_path, "s"), sweep.fresh_dir(tmp_path, "s")
    assert a != b and a.is_dir() and b.is_dir()


def _crash_after_commit(monkeypatch, at_round):
    real = checkpoint.commit

    def commit(run_dir):
        path = real(run_dir)
        if torch.load(path, weights_only=True)["round"] == at_round:
            raise KeyboardInterrupt("killed right after the checkpoint")
        return path
    monkeypatch.setattr(checkpoint, "commit", commit)


def test_rows_are_on_disk_before_the_checkpoint_that_covers_them(tiny_cfg, monkeypatch):
    full = runner.run(tiny_cfg(name="full", **{"federation.rounds": 3}), progress=False)
    cfg = tiny_cfg(name="crash", **{"federation.rounds": 3})
    with monkeypatch.context() as m:
        _crash_after_commit(m, 2)
        with pytest.raises(KeyboardInterrupt):
            runner.run(cfg, progress=False)
    assert list(pd.read_csv(cfg.run_dir / "rounds.csv")["round"]) == [1, 2]
    assert (pd.read_csv(cfg.run_dir / "clients.csv")["round"] == 2).any()
    resumed = runner.run(cfg, resume=True, progress=False)
    cols = ["round", "sampled", "aggregated", "train_loss", "eval_loss", "accuracy", "macro_f1"]
    pd.testing.assert_frame_equal(full.rounds[cols], resumed.rounds[cols], atol=1e-6, rtol=0)
    ccols = ["round", "client_id", "num_samples", "steps", "loss"]
    pd.testing.assert_frame_equal(full.clients[ccols], resumed.clients[ccols], atol=1e-6, rtol=0)


EF = {"federation.payload_dtype": "bf16", "federation.error_feedback": True, "federation.rounds": 4,
      "federation.num_clients": 3, "federation.checkpoint_every": 2, "federation.eval_every": 0}


def test_error_feedback_residuals_resume_like_an_uninterrupted_run(tiny_cfg, monkeypatch):
    full = runner.run(tiny_cfg(name="eff", **EF), progress=False)
    cfg = tiny_cfg(name="efr", **EF)
    with monkeypatch.context() as m:  # crash in round 3: its residuals are written, its checkpoint not
        def step(state, delta, strategy):
            if state.round == 2:
                raise KeyboardInterrupt("killed in round 3")
            return server_step(state, delta, strategy)
        m.setattr(rounds, "server_step", step)
        with pytest.raises(KeyboardInterrupt):
            runner.run(cfg, progress=False)
    assert any(p.name.endswith(".3.pt") for p in (cfg.run_dir / "residuals").iterdir())
    resumed = runner.run(cfg, resume=True, progress=False)
    assert torch.equal(full.state.weights, resumed.state.weights)
    # the checkpoint names each client's residual; nothing it does not need is kept
    manifest = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)["extra"]["residuals"]
    assert sorted(p.name for p in (cfg.run_dir / "residuals").iterdir()) == sorted(
        f"{c}.{r}.pt" for c, r in manifest.items())
    # a fresh run under the name never reuses them
    again = runner.run(cfg, progress=False, overwrite=True)
    assert torch.equal(full.state.weights, again.state.weights)


def test_divergence_stops_with_the_last_finite_state(tiny_cfg, monkeypatch):
    cfg = tiny_cfg(name="div", **{"federation.rounds": 4})

    def step(state, delta, strategy):
        nxt = server_step(state, delta, strategy)
        return nxt if state.round < 2 else replace(nxt, weights=nxt.weights * float("nan"))
    monkeypatch.setattr(rounds, "server_step", step)
    res = runner.run(cfg, progress=False)
    assert res.summary["diverged"] and "diverged in round 3" in res.summary["stopped"]
    assert res.state.round == 2 and torch.isfinite(res.state.weights).all()
    saved, _ = checkpoint.load(cfg.run_dir)
    assert saved.round == 2 and torch.equal(saved.weights, res.state.weights)
    text = (cfg.run_dir / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in summary.json"))
    assert summary["stopped"] == res.summary["stopped"] and summary["rounds"] == 2
    assert "NaN" not in text and os.path.getsize(cfg.run_dir / "rounds.csv") > 0


MPI_EF_RESUME = """
import sys, torch
from fedlib import config, runner
from fedlib.wire.comm import make_comm
over = eval(sys.argv[1])
comm = make_comm("mpi")
full = runner.run(config.load(None, {**over, "name": "full"}), comm=comm, progress=False)
cfg = config.load(None, {**over, "name": "part"})
orig, calls = runner.Context.evaluate, []
def crash(self, w):  # every rank, in round 3 (after its residuals are written)
    calls.append(1)
    if len(calls) == 3:
        raise KeyboardInterrupt
    return orig(self, w)
runner.Context.evaluate = crash
try:
    runner.run(cfg, comm=comm, progress=False)
except KeyboardInterrupt:
    pass
runner.Context.evaluate = orig
res = runner.run(cfg, comm=comm, resume=True, progress=False)
if comm.rank == 0:
    assert torch.equal(full.state.weights, res.state.weights), "resume differs"
    print("EF_RESUME_OK")
"""


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["p2p"])  # the collective path is the single-process test above
def test_error_feedback_resume_on_two_ranks(tmp_path, mode):
    from tests.conftest import mpiexec, tiny_overrides

    over = tiny_overrides(tmp_path, **{**EF, "federation.eval_every": 1, "federation.aggregation": mode})
    p = mpiexec(2, ["-c", MPI_EF_RESUME, repr(over)])
    assert "EF_RESUME_OK" in p.stdout


def _claimant(folders, start, hold, out):
    for t, run_dir in enumerate(folders):  # one trial per folder, all claimants released at once
        start.wait()
        try:
            rundir.Lock(run_dir)
            out.put((t, "won"))
        except rundir.RunDirError as e:
            out.put((t, str(e)))
        hold.wait()  # the winner stays alive while the others judge its lock


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_many_claimants_exactly_one_wins_every_time(tmp_path, stale):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    n, trials = 16, 12
    folders = [tmp_path / f"t{t}" for t in range(trials)]
    if stale:  # left by a process of this host that is gone: taken over by one claimant only
        for d in folders:
            d.mkdir()
            (d / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    start, hold, out = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_claimant, args=(folders, start, hold, out)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in range(n * trials)]  # queues may reorder across trials
        for t, run_dir in enumerate(folders):
            got = [msg for i, msg in results if i == t]
            assert len(got) == n and got.count("won") == 1, (t, got)
            losers = [g for g in got if g != "won"]
            assert all("is in use by another run" in g for g in losers), (t, losers)  # never half-written
            assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # no temp file left behind
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def test_a_lock_on_another_host_is_judged_by_its_heartbeat(tmp_path, capsys):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    lock = run_dir / ".lock"
    lock.write_text(json.dumps({"pid": 1, "host": "node-that-died", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(rundir.RunDirError, match="pid 1 on host node-that-died .*heartbeat 0 s ago"):
        rundir.Lock(run_dir)  # fresh: that run is alive somewhere
    old = time.time() - rundir.STALE_S - 60
    os.utime(lock, (old, old))
    mine = rundir.Lock(run_dir)
    err = capsys.readouterr().err
    assert "took over the lock of pid 1 on node-that-died (no heartbeat for 11 min)" in err
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    os.utime(lock, (old, old))
    mine._heartbeat_once()
    assert time.time() - lock.stat().st_mtime < 60  # the holder's heartbeat keeps it fresh
    mine.release()
    assert not lock.exists()


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(tiny_cfg, monkeypatch):
    import errno

    cfg = tiny_cfg(name="full_disk", **{"federation.rounds": 3, "federation.export": False})
    real = torch.save

    def save(obj, f):  # the file system fills up halfway through round 2's checkpoint
        if obj["round"] < 2:
            return real(obj, f)
        real(obj, f)
        f.truncate(f.tell() // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint.torch, "save", save)
    with pytest.raises(checkpoint.WriteError) as e:
        runner.run(cfg, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{cfg.run_dir}: could not write the checkpoint of round 2: "
                                              "No space left on device (")
    assert msg.endswith("free); removed the half-written checkpoint.tmp, the last checkpoint.pt is intact")
    assert sorted(p.name for p in cfg.run_dir.iterdir()) == [
        "checkpoint.pt", "clients.csv", "config.yaml", "labels.json", "partition.csv", "rounds.csv"]  # no tmp
    assert checkpoint.load(cfg.run_dir)[0].round == 1
