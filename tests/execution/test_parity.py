"""No quality loss: cold, warm, incremental and Redis-filled stores give identical scans."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from technic_v4.config.scan import ScanConfig
from technic_v4.pipeline import scan
from technic_v4.testing import RedisServer, make_market

EPOCH = dt.date(2025, 9, 2)
END = dt.date(2026, 11, 20)
CFG = ScanConfig(min_history=30, lookback_days=60)


def test_cold_warm_incremental_and_redis_filled_are_identical(tmp_path: Path) -> None:
    fresh = make_market(tmp_path / "fresh", n=150, epoch=EPOCH, end=END)
    cold = scan(CFG, fresh, max_workers=1).frame
    warm = scan(CFG, fresh, max_workers=2).frame
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
