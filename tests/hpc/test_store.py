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
