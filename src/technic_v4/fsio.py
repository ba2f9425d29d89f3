"""Atomic file writes: every file technic writes appears complete or not at all.

A writer fills a uniquely named temporary file (or directory) in the target's own folder,
flushes it to disk, and renames it over the target; rename is atomic within a file system, so a
reader sees either the old version or the new one, never a mix. Unique temporary names make this
safe for any number of threads and processes writing the same target at once: the last rename
wins, and every version it can leave behind is a complete one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (not every platform can open a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # e.g. a file system that does not sync directories: the rename itself is done
    finally:
        os.close(fd)


def _temp_name(target: Path) -> str:
    return f".{target.name}."


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb", encoding: str | None = None
                ) -> Iterator[IO[Any]]:
    """Open a temporary file to fill; on a clean exit it replaces ``path`` atomically."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    with atomic_file(path, "w", encoding=encoding) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """A temporary folder to fill; on a clean exit it becomes ``path``.

    Folders cannot be renamed over a non-empty folder, so when ``path`` already exists (another
    writer finished first) the new copy is discarded: ``path`` names its content, and either copy
    is a complete one.
    """
    target = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another writer's complete copy is there
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a writer's unfinished temporary file or folder."""
    return path.name.startswith(".") and path.name.endswith(".tmp")
