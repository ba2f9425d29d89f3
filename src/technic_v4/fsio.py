"""Atomic file writes: every file technic writes appears complete or not at all.

A writer fills a uniquely named temporary file (or directory) in the target's own folder,
flushes it to disk, and renames it over the target; rename is atomic within a file system, so a
reader sees either the old version or the new one, never a mix. Unique temporary names make this
safe for any number of threads and processes writing the same target at once: the last rename
wins, and every version it can leave behind is a complete one.

``mkstemp``/``mkdtemp`` create private temporaries (0600/0700) and the rename keeps that mode, so
each temporary is given the mode an ordinary ``open``/``mkdir`` would have produced before it is
renamed: ``0o666 & ~umask`` for a new file (a replaced file keeps its own mode), ``0o777 & ~umask``
for a folder. Outputs, caches and store folders stay readable by whoever the umask allows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask_by_swap() -> int:
    """The umask the only portable way: set one, read the old, restore it. ``os.umask`` is
    process-wide, so it is done once, at import (under the import lock); a thread creating a file
    during the swap gets 0o077, so such a file comes out more private, never more public."""
    old = os.umask(0o077)
    os.umask(old)
    return old


_IMPORT_UMASK = _umask_by_swap()


def _umask() -> int:
    """The process umask now: read from ``/proc/self/status`` on Linux (no race, and it sees a
    later ``os.umask`` change); elsewhere (or a kernel before 4.7) the value read at import."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return _IMPORT_UMASK
    return _IMPORT_UMASK


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
    try:
        file_mode = stat.S_IMODE(os.stat(target).st_mode)  # replacing a file: keep its mode
    except FileNotFoundError:
        file_mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.fchmod(f.fileno(), file_mode)
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
        # keep a set-group-ID bit inherited from a group-shared parent (chmod would clear it)
        setgid = os.stat(tmp).st_mode & stat.S_ISGID
        os.chmod(tmp, (0o777 & ~_umask()) | setgid)
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
