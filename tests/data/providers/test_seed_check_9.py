"""Seed check 9, honestly, against the loopback vendor: requests a scan really makes.

technic's store is market-wide, so a cold fill costs one grouped request per session for every
listing at once (never one per listing); reference data (ticker list, details) is cached and
counted apart from bars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from polygon_setup import N_LISTINGS, P_EPOCH

from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings
from technic_v4.data.calendar import sessions_between
from technic_v4.data.market import MarketData
from technic_v4.data.providers.polygon import PolygonProvider
from technic_v4.pipeline import scan
from technic_v4.testing import END
from technic_v4.vendor_server import VendorServer

EARLIER = dt.date(2026, 11, 17)
CFG = ScanConfig(max_symbols=100, min_history=20, lookback_days=30)
BARS = ("grouped_daily", "aggs_ticker")


def _market(path: Path, prov: PolygonProvider) -> MarketData:
    return MarketData(settings=Settings(data_dir=path, progress=False), provider=prov)


def test_09_cold_warm_and_incremental_vendor_requests(
        vendor: Callable[..., VendorServer], polygon: Callable[..., PolygonProvider],
        tmp_path: Path) -> None:
    srv = vendor()
    prov = polygon(srv, end=EARLIER)
    md = _market(tmp_path, prov)
    cold = scan(CFG, md)
    counts = prov.request_counts
    sessions = len(sessions_between(P_EPOCH, EARLIER))
    assert counts["grouped_daily"] == sessions  # one per session, all listings at once
    assert counts["aggs_ticker"] == 0
    assert sum(counts[k] for k in BARS) <= N_LISTINGS + 1  # at most one per listing + SPY
    assert cold.stats["counters"]["api_calls"] == {k: v for k, v in counts.items() if v}
    assert srv.counts == {k: v for k, v in counts.items() if v}  # what the server saw

    warm = scan(CFG, md)  # same process, store and memory warm
    assert prov.request_counts == counts
    assert warm.stats["counters"]["api_calls_total"] == 0
    md.store.close()

    # Three sessions later, a new process on the same store: one request per missing session,
    # plus the corporate-actions check (splits and dividends, one page each).
    prov2 = polygon(srv, end=END)
    md2 = _market(tmp_path, prov2)
    inc = scan(CFG, md2)
    missing = len(sessions_between(EARLIER, END)) - 1
    assert missing == 3
    assert prov2.request_counts["grouped_daily"] == missing
    assert prov2.request_counts["splits"] == 1 and prov2.request_counts["dividends"] == 1
    assert prov2.request_counts["aggs_ticker"] == 0
    assert prov2.request_counts["ticker_details"] == 0  # reference details cached
    assert inc.stats["counters"]["api_calls"]["grouped_daily"] == missing
    md2.store.close()
