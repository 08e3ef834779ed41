"""fedlib.hpc.store.atomic_write: the whole new file or the whole old one, never a temporary left."""

from pathlib import Path

import pytest

from fedlib import config
from fedlib.hpc.store import atomic_write
from fedlib.record import recorder


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path):
    path = tmp_path / "f.json"
    atomic_write(path, "old\n")
    atomic_write(path, b"new\n")
    atomic_write(path, lambda tmp: tmp.write_text("newest\n"))
    assert path.read_text() == "newest\n" and [p.name for p in tmp_path.iterdir()] == ["f.json"]

    def half(tmp: Path) -> None:  # a writer that fails halfway
        tmp.write_text("par")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half)
    assert path.read_text() == "newest\n" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_ranks_but_0_get_a_recorder_that_writes_nothing(tmp_path: Path):
    cfg = config.load(None, {"output_dir": str(tmp_path), "name": "r"})
    cfg.run_dir.mkdir(parents=True)
    null = recorder.Recorder.for_rank(False, cfg, 2, None, None, progress=False)
    assert isinstance(null, recorder.NullRecorder)
    null.start(None, None, {}, None)  # type: ignore[arg-type]
    null.write_round(lambda: pytest.fail("rows are built only where they are written"))
    null.note("nothing printed")
    null.close()
    assert list(cfg.run_dir.iterdir()) == []
    assert type(recorder.Recorder.for_rank(True, cfg, 2, None, None, progress=False)) is recorder.Recorder


def test_resume_drops_the_retired_extra_column_and_keeps_the_rows(tmp_path: Path):
    """rounds.csv of an earlier version (an always-empty `extra` column) still resumes."""
    import csv
    import dataclasses

    from fedlib.record.metrics import CsvLog, RoundRow

    fields = [f.name for f in dataclasses.fields(RoundRow)]
    assert "extra" not in fields
    path = tmp_path / "rounds.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*fields, "extra"])
        w.writeheader()
        w.writerows([{"round": r, "extra": ""} for r in (1, 2)])
    CsvLog(path, RoundRow, keep_upto=1).close()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["round"] for r in rows] == ["1"] and "extra" not in rows[0]


class _ThreadComm:
    """`size` ranks as threads: barrier and bcast_obj as MPI's (every rank calls each in order)."""

    def __init__(self, size: int) -> None:
        import threading

        self.size, self._barrier, self._box = size, threading.Barrier(size), [None]
        self._local = threading.local()

    @property
    def rank(self) -> int:
        return self._local.rank

    def barrier(self, idle: bool = False) -> None:
        self._barrier.wait()

    def bcast_obj(self, obj, root: int = 0):
        if self.rank == root:
            self._box[0] = obj
        self.barrier()
        got = self._box[0]
        self.barrier()
        return got


def _job(tmp_path: Path, shared: bool) -> list[int]:
    """2 nodes x 2 ranks build one cache file: on one shared folder, or on each node's own
    (the same path names other storage on each node: node n's folder is `tmp/node<n>`)."""
    import threading

    from fedlib.hpc.store import build_once

    comm, writers = _ThreadComm(4), []

    def rank(r: int) -> None:
        comm._local.rank = r
        node, local = divmod(r, 2)
        folder = tmp_path / ("shared" if shared else f"node{node}")
        build_once(folder / "c.bin", lambda p: (writers.append(r), p.write_text("x")), comm, local_rank=local)
        assert (folder / "c.bin").read_text() == "x"

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(writers)


def test_a_shared_cache_is_built_once_per_job_a_node_local_one_once_per_node(tmp_path):
    """With FEDLIB_CACHE on a shared file system every node's first rank built the same file
    (one per node, all but one wasted); now rank 0 builds it and the nodes that see its probe
    wait. Node-local storage still gets one copy per node."""
    assert _job(tmp_path / "a", shared=True) == [0]
    assert _job(tmp_path / "b", shared=False) == [0, 2]
    assert [p.name for p in (tmp_path / "a/shared").iterdir()] == ["c.bin"]  # the probe is gone
