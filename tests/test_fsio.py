"""Atomic writes: threads and processes writing one target at once always leave one complete
version, and a reader never sees a partial file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from technic_v4 import fsio

SIZE = 1 << 20  # 1 MiB: a partial write would be visible


def _content(k: int) -> bytes:
    return bytes([k]) * SIZE


def _check(path: Path, writers: set[int]) -> None:
    data = path.read_bytes()
    assert len(data) == SIZE and data[0] in writers and data == _content(data[0])


def test_threads_writing_one_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    fsio.write_bytes(target, _content(0))
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            data = target.read_bytes()  # never absent, never partial
            assert data == _content(data[0])
            seen.append(data[0])

    reader = threading.Thread(target=read)
    reader.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: [fsio.write_bytes(target, _content(k)) for _ in range(5)],
                      range(1, 9)))
    stop.set()
    reader.join()
    _check(target, set(range(1, 9)))
    assert seen
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary files left


WRITER = textwrap.dedent("""
    import sys
    from technic_v4 import fsio
    k, path = int(sys.argv[1]), sys.argv[2]
    for _ in range(20):
        fsio.write_bytes(path, bytes([k]) * (1 << 20))
""")


def test_processes_writing_one_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(k), str(target)])
             for k in range(1, 5)]
    reads = 0
    while any(p.poll() is None for p in procs):
        if target.exists():
            _check(target, {1, 2, 3, 4})
            reads += 1
    assert all(p.wait() == 0 for p in procs)
    _check(target, {1, 2, 3, 4})
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failed_write_keeps_the_old_version(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    fsio.write_text(target, "old")
    try:
        with fsio.atomic_file(target, "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_directories_appear_whole(tmp_path: Path) -> None:
    target = tmp_path / "panel"

    def write(k: int) -> None:
        with fsio.atomic_dir(target) as tmp:
            for i in range(5):
                (tmp / f"{i}.bin").write_bytes(_content(k))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(1, 7)))
    files = sorted(p.name for p in target.iterdir())
    assert files == [f"{i}.bin" for i in range(5)]
    first = (target / "0.bin").read_bytes()[0]
    for i in range(5):  # one writer's complete copy, not a mix
        assert (target / f"{i}.bin").read_bytes() == _content(first)
    assert [p.name for p in tmp_path.iterdir()] == ["panel"]


_MODES = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    os.umask(int(sys.argv[2], 8))
    from technic_v4 import fsio
    root = Path(sys.argv[1])
    fsio.write_text(root / "out.csv", "a,b\\n")
    with fsio.atomic_dir(root / "panel") as d:
        (d / "x.bin").write_bytes(b"x")
    os.umask(0o027)  # a later change is seen (read from /proc on Linux, else the import-time value)
    fsio.write_bytes(root / "late.bin", b"x")
    for name in ("out.csv", "panel", "late.bin"):
        print(oct(os.stat(root / name).st_mode & 0o777))
""")


def _modes(root: Path, umask: str) -> list[str]:
    root.mkdir()
    out = subprocess.run([sys.executable, "-c", _MODES, str(root), umask], check=True,
                         capture_output=True, text=True).stdout
    return out.split()


def test_new_files_and_folders_get_the_umask_modes(tmp_path: Path) -> None:
    """mkstemp/mkdtemp make 0600/0700 temporaries; the renamed result must be what open/mkdir
    would give, so outputs and store folders are readable by the users the umask allows."""
    late = "0o640" if Path("/proc/self/status").exists() else None
    shared = _modes(tmp_path / "shared", "022")
    assert shared[:2] == ["0o644", "0o755"] and shared[2] in (late, "0o644")
    private = _modes(tmp_path / "private", "077")
    assert private[:2] == ["0o600", "0o700"] and private[2] in (late, "0o600")


def test_replacing_a_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("{}")
    target.chmod(0o640)
    fsio.write_text(target, '{"a": 1}')
    assert target.stat().st_mode & 0o777 == 0o640 and target.read_text() == '{"a": 1}'
