"""No quality loss: cold, warm, incremental and Redis-filled stores, and serial and threaded
indicator stages, give identical scans."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.testing import RedisServer, make_market

EPOCH = dt.date(2025, 9, 2)
END = dt.date(2026, 11, 20)
CFG = ScanConfig(min_history=30, lookback_days=60)


def test_cold_warm_incremental_and_redis_filled_are_identical(tmp_path: Path) -> None:
    fresh = make_market(tmp_path / "fresh", n=150, epoch=EPOCH, end=END, max_workers=1)
    cold = scan(CFG, fresh).frame
    fresh.settings.max_workers = 2
    warm = scan(CFG, fresh).frame
    fresh.store.close()

    # Incremental: a store filled to a week earlier, then updated session by session.
    inc_dir = tmp_path / "inc"
    for end in (dt.date(2026, 11, 13), dt.date(2026, 11, 17), END):
        md = make_market(inc_dir, n=150, epoch=EPOCH, end=end)
        md.ensure_current()
        if end != END:
            md.store.close()
    incremental = scan(CFG, md).frame
    md.store.close()

    with RedisServer() as redis:
        a = make_market(tmp_path / "a", n=150, epoch=EPOCH, end=END, redis_url=redis.url)
        scan(CFG, a)
        a.store.close()
        b = make_market(tmp_path / "b", n=150, epoch=EPOCH, end=END, redis_url=redis.url)
        from_redis = scan(CFG, b).frame
        assert b.provider.request_counts["grouped_daily"] == 0
        b.store.close()

    for other in (warm, incremental, from_redis):
        pd.testing.assert_frame_equal(cold, other, check_exact=True)


@pytest.mark.slow
def test_serial_and_threaded_scans_of_the_full_market_are_identical(
        full_market: MarketData) -> None:
    """The default-size market (6,000 listings) scanned whole with 1, 2 and 4 workers, as the
    ``max_workers`` setting says: bit-identical frames, and each run used that many threads."""
    frames, threads = {}, {}
    before = full_market.settings.max_workers
    try:
        for workers in (1, 2, 4):
            full_market.settings.max_workers = workers
            full_market.clear_memory()  # computed again, not served from memory
            res = scan(ScanConfig(), full_market)
            frames[workers] = res.frame
            threads[workers] = res.stats["execution"]["threads_used"]
    finally:
        full_market.settings.max_workers = before
    assert threads == {1: 1, 2: 2, 4: 4}
    assert len(frames[1]) > 3000
    for workers in (2, 4):
        pd.testing.assert_frame_equal(frames[1], frames[workers], check_exact=True)
