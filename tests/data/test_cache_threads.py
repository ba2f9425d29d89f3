"""The L1 cache and the counters can be read while scans write them (the HTTP service does)."""

from __future__ import annotations

import threading

from technic_v4.config.scan import ScanConfig
from technic_v4.data.cache import MemoryCache
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan


def test_memory_cache_reads_during_writes() -> None:
    cache = MemoryCache(max_bytes=10_000)
    stop = threading.Event()
    errors: list[BaseException] = []
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            cache.put(written[0], object(), nbytes=100, rows=1)  # evicts as it goes
            written[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(20_000):
            try:
                # Each entry is 100 bytes and 1 row: the byte bound is 100 entries.
                assert cache.nbytes <= 10_000 and cache.rows <= 100 and len(cache) <= 100
            except RuntimeError as e:  # "OrderedDict mutated during iteration"
                errors.append(e)
                break
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert written[0] > 100  # it did evict while being read ...
    assert (len(cache), cache.rows, cache.nbytes) == (100, 100, 10_000)  # ... and stays full
    assert cache.get(written[0] - 1) is not None and cache.get(written[0] - 101) is None


def test_stats_during_concurrent_scans(small_market: MarketData) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                small_market.clear_memory()
                scan(ScanConfig(top_n=5), small_market)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    n = 0
    while any(t.is_alive() for t in threads):
        small_market.stats()
        n += 1
    for t in threads:
        t.join()
    assert errors == [] and n > 0
    total = small_market.stats()["cumulative"]
    assert total["requested"] == sum(total["served_by"].values())
