"""``heap.trim`` gives freed C-heap pages back (glibc): resident memory drops after a free."""

from __future__ import annotations

import ctypes.util
import platform

import numpy as np
import pytest

from technic_v4 import heap


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


@pytest.mark.skipif(platform.system() != "Linux" or ctypes.util.find_library("c") is None,
                    reason="glibc only")
def test_trim_returns_freed_heap_pages() -> None:
    # Many small arrays (below the mmap threshold: they live in the heap), freed except the
    # last, which pins the heap's top so that plain free() cannot shrink it.
    parts = [np.ones(8_000) for _ in range(20_000)]  # ~1.3 GB in 64 kB pieces
    pin = np.ones(8_000)
    del parts
    before = _rss_kb()
    assert heap.trim() is True
    after = _rss_kb()
    assert before - after > 500_000, (before, after)  # > 0.5 GB back
    del pin
