"""Local threads share a few chunks each: a slow thread's share goes to the others, and a
caller that gives up (a cancelled scan) stops the rest of the work."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from technic_v4.errors import ScanCancelled
from technic_v4.execution import LocalBackend


def test_a_slow_thread_leaves_its_share_to_the_other() -> None:
    ran: list[tuple[str, int]] = []
    first = threading.Event()

    def fn(rows: np.ndarray, table: np.ndarray) -> dict[str, np.ndarray]:
        if threading.current_thread().name == "technic-ind-0" and not first.is_set():
            first.set()
            time.sleep(0.5)  # descheduled by a busy machine
        ran.append((threading.current_thread().name, int(rows[0])))
        return {"x": table[rows]}

    backend = LocalBackend(2)
    table = np.arange(4000) * 2.0
    parts = backend.run_chunks(fn, (np.arange(4000),), shared=(table,))
    assert np.array_equal(np.concatenate([p["x"] for p in parts]), table)  # in order, whole
    assert len(parts) == 2 * LocalBackend.CHUNKS_PER_WORKER
    assert backend.threads_used == 2
    other = [lo for name, lo in ran if name == "technic-ind-1"]
    assert len(other) == len(parts) - 1  # everything but the slow thread's first chunk


def test_a_caller_that_gives_up_stops_the_remaining_chunks() -> None:
    done_rows: list[int] = []

    def fn(rows: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(0.05)
        done_rows.append(len(rows))
        return {"x": rows.astype(float)}

    def on_chunk(rows: int) -> None:
        raise ScanCancelled("scan cancelled during indicators")

    with pytest.raises(ScanCancelled):
        LocalBackend(2).run_chunks(fn, (np.arange(4000),), on_chunk)
    assert 0 < sum(done_rows) < 4000


def test_one_worker_runs_one_chunk_in_one_other_thread() -> None:
    names: set[str] = set()

    def fn(rows: np.ndarray) -> dict[str, np.ndarray]:
        names.add(threading.current_thread().name)
        return {"x": rows.astype(float)}

    parts = LocalBackend(1).run_chunks(fn, (np.arange(4000),))
    assert len(parts) == 1 and names == {"technic-ind-0"}
