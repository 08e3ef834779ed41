"""Shared fixtures: a tiny random-init model config for fast runs, an mpiexec launcher, and
`two_ranks`: the two-rank runs of the whole session made by one mpiexec job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedlib.wire.comm import LAUNCH_ENV as MPI_ENV  # light: no torch, no transformers

ROOT = Path(__file__).resolve().parent.parent
os.environ.update({k: v for k, v in MPI_ENV.items() if k not in os.environ})

from fedlib import config  # noqa: E402 - after the environment: huggingface_hub reads it on import

# A 2-layer, 32-wide BERT: real architecture code, random init, milliseconds per step.
TINY_MODEL = {
    "name": "bert-base-uncased",
    "overrides": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                  "intermediate_size": 64, "vocab_size": 4096},
}


def tiny_overrides(tmp_path: Path, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "tiny", "output_dir": str(tmp_path), "threads": 1,
        "data.name": "scicite", "data.subset": "tiny", "data.max_length": 32,
        "data.max_train_samples": 192, "data.max_eval_samples": 64,
        "model.name": TINY_MODEL["name"], "model.overrides": TINY_MODEL["overrides"],
        "client.lr": 1e-3, "client.batch_size": 8, "client.local_steps": 3,
        "federation.num_clients": 6, "federation.rounds": 2,
    }
    base.update(extra)
    return base


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    def make(**extra: object) -> config.RunConfig:
        return config.load(None, tiny_overrides(tmp_path, **extra))
    return make


def mpiexec(n: int, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run `python args...` on n MPI ranks from the venv; raises with the output on failure."""
    exe = Path(sys.executable).with_name("mpiexec")
    cmd = [str(exe), "-n", str(n), sys.executable, *args]
    env = {**os.environ, **MPI_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_on_ranks(n: int, tmp_path: Path, name: str, **extra: object) -> Path:
    """Run the tiny config `name` (`tiny_overrides` plus `extra`) with `python -m fedlib run` on
    n MPI ranks; its run folder. The rank-independence tests compare it with a 1-process run."""
    over = tiny_overrides(tmp_path, name=name, **extra)
    mpiexec(n, ["-m", "fedlib", "run", "--quiet",
                *[a for k, v in over.items() for a in ("--set", f"{k}={json.dumps(v)}")]])
    return tmp_path / name


# ---- the two-rank runs of a session: one mpiexec job (tests/rank_job.py) -------------------------

class RankJob:
    """The `two_ranks` runs the selected tests declare, all made by one `mpiexec -n 2` job when
    the first of them is needed (the first test waits for the whole job: it never runs beside
    another MPI job, whose ranks would spin on the same cores). A run the job did not finish (it
    failed and aborted the job, or the job hung) is made again on its own by `run_on_ranks`,
    whose error then names the failing config."""

    TIMEOUT_S = 900  # the whole job; one run alone gets mpiexec's 600 s

    def __init__(self, root: Path, declared: list[dict[str, object]]) -> None:
        self.root, self.proc, self.log = root, None, root / "job.log"
        self.runs: dict[str, Path] = {}  # canonical overrides -> the job's run folder
        for extra in declared:
            self.runs.setdefault(self.key(extra), root / f"r{len(self.runs)}")

    @staticmethod
    def key(extra: dict[str, object]) -> str:
        return json.dumps(extra, sort_keys=True, default=str)

    def start(self) -> None:
        jobs = []
        for key, run_dir in self.runs.items():
            over = tiny_overrides(self.root, name=run_dir.name, **json.loads(key))
            jobs.append({"done": str(run_dir.with_suffix(".done")),
                         "argv": ["run", "--quiet", *[a for k, v in over.items()
                                                      for a in ("--set", f"{k}={json.dumps(v)}")]]})
        spec = self.root / "jobs.json"
        spec.write_text(json.dumps(jobs, indent=1))
        exe = Path(sys.executable).with_name("mpiexec")
        with open(self.log, "w") as log:
            cmd = [str(exe), "-n", "2", sys.executable, "-m", "tests.rank_job", str(spec)]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, **MPI_ENV})

    def folder(self, extra: dict[str, object]) -> Path | None:
        """The job's run folder for `extra`, once made; None when the job cannot make it."""
        run_dir = self.runs.get(self.key(extra))
        if run_dir is None:
            return None
        if self.proc is None:
            self.start()
            assert self.proc is not None
            try:
                self.proc.wait(timeout=self.TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.stop()
        done = run_dir.with_suffix(".done")
        return run_dir if done.is_file() and done.read_text() == "0" else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _declared(items: list[pytest.Item]) -> list[dict[str, object]]:
    """Every `two_ranks` marker's runs, in the order the selected tests use them."""
    return [extra for item in items for mark in item.iter_markers("two_ranks")
            for extra in mark.kwargs.values()]


@pytest.fixture(scope="session")
def _rank_job(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RankJob]:
    job = RankJob(tmp_path_factory.mktemp("two_ranks"), _declared(request.session.items))
    yield job
    job.stop()


@pytest.fixture
def two_ranks(request: pytest.FixtureRequest, tmp_path: Path, _rank_job: RankJob) -> Callable[[str], Path]:
    """`two_ranks(name)`: the folder `run_on_ranks(2, tmp_path, name, **extra)` would make, for
    the run the test declares as `@pytest.mark.two_ranks(name=extra)` (extra: `tiny_overrides`
    keys), made by the session's one mpiexec job and copied into tmp_path/name."""
    marks = {name: extra for mark in request.node.iter_markers("two_ranks")
             for name, extra in mark.kwargs.items()}

    def get(name: str) -> Path:
        if name not in marks:
            raise KeyError(f"two_ranks({name!r}): the test declares no such run "
                           f"(@pytest.mark.two_ranks({name}={{...}}); declared: {sorted(marks)})")
        made = _rank_job.folder(marks[name])
        if made is None:  # not made by the job: alone, so that a failure shows its own output
            return run_on_ranks(2, tmp_path, name, **marks[name])
        shutil.copytree(made, tmp_path / name)
        return tmp_path / name
    return get


# ---- early: a test's long subprocess, started when the session starts -------------------------

@dataclass(frozen=True)
class Finished:
    """An `early` command once it ended: its folder ("{out}"), exit status, output and how long
    it ran (for the lead's timing of the lane; no test asserts on it)."""
    out: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Lane:
    """Commands the selected tests declare with `@pytest.mark.early(name=[args...])` (args of
    `python`; "{out}" stands for the command's own empty folder), run one after another in the
    background from the start of the session: most of the suite runs on one core (tiny runs set
    `threads: 1`), so the notebooks' long executions take the other. Their tests run last (see
    `pytest_collection_modifyitems`) and wait for their own command only."""

    TIMEOUT_S = 1800  # one command; then it ends with its process group

    def __init__(self, root: Path, commands: dict[str, list[str]]) -> None:
        self.root, self.commands = root, commands
        self.finished: dict[str, tuple[int, float]] = {}  # name -> (exit status, seconds)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            for name, args in self.commands.items():
                (self.root / name).mkdir()
                argv = [sys.executable, *(a.replace("{out}", str(self.root / name)) for a in args)]
                with open(self.root / f"{name}.out", "w") as out, open(self.root / f"{name}.err", "w") as err:
                    with self.cond:
                        if self.stopped:
                            return
                        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT,
                                                     env={**os.environ, **MPI_ENV}, start_new_session=True)
                    t0 = time.monotonic()
                    try:
                        code = self.proc.wait(timeout=self.TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        self._end(self.proc)
                        code = -signal.SIGKILL
                seconds = time.monotonic() - t0
                (self.root / f"{name}.seconds").write_text(f"{seconds:.1f}\n")  # beside its .out and .err
                with self.cond:
                    self.finished[name] = code, seconds
                    self.cond.notify_all()
        finally:  # whatever ended the loop: nobody waits for ever
            with self.cond:
                self.stopped = True
                self.cond.notify_all()

    def result(self, name: str) -> Finished:
        """Wait for command `name` to end (-1: it never ran, the lane stopped first)."""
        with self.cond:
            self.cond.wait_for(lambda: name in self.finished or self.stopped)
        if name not in self.finished:
            return Finished(self.root / name, -1, "", "the lane stopped before this command ran", 0.0)
        text = {k: (self.root / f"{name}.{k}").read_text(errors="replace") for k in ("out", "err")}
        code, seconds = self.finished[name]
        return Finished(self.root / name, code, text["out"], text["err"], seconds)

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the command's process group (papermill's kernels, ipyparallel's engines),
        then SIGKILL."""
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        """At the end of the session: a command still running (its test deselected, -x, Ctrl-C)
        ends, and no other starts."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            self._end(proc)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that wait for an `early` command run last, so that it has the whole suite's time
    (a stable sort: the order is kept otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker("early") is not None)


@pytest.fixture(scope="session", autouse=True)
def _lane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane | None]:
    """Set up before the session's first test: starts the selected tests' `early` commands."""
    commands = {name: args for item in request.session.items for mark in item.iter_markers("early")
                for name, args in mark.kwargs.items()}
    lane = Lane(tmp_path_factory.mktemp("early"), commands) if commands else None
    if lane is not None:
        lane.thread.start()
    yield lane
    if lane is not None:
        lane.stop()


@pytest.fixture
def early(_lane: Lane | None) -> Callable[[str], Finished]:
    """`early(name)`: the test's `early` command `name` once it ended (as subprocess.run would
    return it, with its folder)."""
    def get(name: str) -> Finished:
        if _lane is None or name not in _lane.commands:
            raise KeyError(f"early({name!r}): no test declares @pytest.mark.early({name}=[...])")
        return _lane.result(name)
    return get
