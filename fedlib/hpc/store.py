"""Where fedlib keeps files, and the one way it replaces them. `atomic_write` writes beside
the target under a temporary name no other writer uses (host and pid in it, for folders shared
between nodes) and renames it into place: a reader, or a run interrupted mid-write, sees the
whole old file or the whole new one, never half of either.
"""

from __future__ import annotations

import os
import socket
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
    ~/.cache/fedlib. Point FEDLIB_CACHE at scratch or node-local storage where $HOME is
    read-only on compute nodes (Frontier)."""
    if os.environ.get("FEDLIB_CACHE"):
        return Path(os.environ["FEDLIB_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fedlib"


def build_once(path: Path, write: Callable[[Path], None], comm: Any = None) -> bool:
    """Make the cache file `path` exist, once per node: with a multi-rank `comm` the first rank
    of each node writes it (atomically, so readers see the whole file or none) while the others
    wait at a barrier — a node-local cache is filled once per node, a shared one once. True
    when `path` is there to read; a cache that cannot be written warns and the caller computes
    in memory."""
    parallel = comm is not None and comm.size > 1
    if (not parallel or launcher.local_rank() == 0) and not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, write)
        except OSError as e:  # a read-only cache slows the next start, it does not stop this one
            warnings.warn(f"cache {path.parent} not writable ({e}); set FEDLIB_CACHE to a writable "
                          "folder", stacklevel=3)
    if parallel:
        comm.barrier()
    return path.is_file()
