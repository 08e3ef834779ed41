"""Where fedlib keeps files, and the one way it replaces them. `atomic_write` writes beside
the target under a temporary name no other writer uses (host and pid in it, for folders shared
between nodes) and renames it into place: a reader, or a run interrupted mid-write, sees the
whole old file or the whole new one, never half of either.
"""

from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import launcher

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["REPO_ROOT", "atomic_write", "build_once", "cache_dir", "replacing", "tmp_name"]


def tmp_name(path: Path) -> Path:
    """A temporary name no other writer uses, even on another node sharing the folder."""
    return path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """The temporary path to write `path`'s new content to; renamed over `path` when the block
    ends, removed when it raises."""
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Replace `path` with `content` (text, bytes, or a function that writes the file it is
    given) atomically."""
    with replacing(path) as tmp:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
    return path


def cache_dir() -> Path:
    """Where fedlib caches tokenized data: $FEDLIB_CACHE, else $XDG_CACHE_HOME/fedlib, else
    ~/.cache/fedlib. On a cluster point FEDLIB_CACHE at node-local storage or the project's
    scratch ($MEMBERWORK/<project> on Frontier, whose home is writable on the compute nodes but
    is small NFS: OLCF's data guide), as cluster/env.sh does."""
    if os.environ.get("FEDLIB_CACHE"):
        return Path(os.environ["FEDLIB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fedlib"


def build_once(path: Path, write: Callable[[Path], None], comm: Any = None,
               local_rank: int | None = None) -> bool:
    """Make the cache file `path` exist, once per job: with a multi-rank `comm` the job's rank 0
    writes it and leaves a probe beside it; the first rank of another node that sees the probe
    shares rank 0's folder (a shared FEDLIB_CACHE on Lustre or NFS) and waits for its file, one
    that does not (node-local storage) writes its node's copy; the other ranks wait at a barrier.
    Writes are atomic: readers see the whole file or none. True when `path` is there to read; a
    cache that cannot be written warns and the caller computes in memory."""
    if comm is None or comm.size <= 1:
        _write_once(path, write)
        return path.is_file()
    token = comm.bcast_obj(uuid.uuid4().hex if comm.rank == 0 else None)
    probe = path.with_name(f".{path.name}.{token}.probe")
    if comm.rank == 0 and _write_once(path, write):
        probe.touch()
    comm.barrier(idle=True)  # the waiting ranks leave their cores to the builder (`devices.builder_threads`)
    first = launcher.local_rank() == 0 if local_rank is None else local_rank == 0
    if comm.rank != 0 and first and not probe.exists():  # this node cannot see rank 0's folder
        _write_once(path, write)
    comm.barrier(idle=True)
    if comm.rank == 0:
        probe.unlink(missing_ok=True)
    return path.is_file()


def _write_once(path: Path, write: Callable[[Path], None]) -> bool:
    """Write `path` unless it is there; False when its folder is not writable (with a warning)."""
    if path.is_file():
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as e:  # a read-only cache slows the next start, it does not stop this one
        warnings.warn(f"cache {path.parent} not writable ({e}); set FEDLIB_CACHE to a writable "
                      "folder", stacklevel=4)
        return False
    return True
