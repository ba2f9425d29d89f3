"""One-symbol requests load only that symbol's bars; ``days`` and lookbacks are bounded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic_v4 import data_engine
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import ConfigError
from technic_v4.pipeline import scan
from technic_v4.testing import make_market

EPOCH = dt.date(2026, 3, 2)
END = dt.date(2026, 11, 20)


def _files(md: MarketData) -> dict[str, int]:
    d = md._panel_files.directory
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")} \
        if d.exists() else {}


def _whole_panels(md: MarketData) -> int:
    """Entries in the memory cache that hold every listing."""
    return sum(1 for v in md.memory._items.values() if v[2] == len(md.reference()))


@pytest.fixture
def market(tmp_path: Path) -> MarketData:
    md = make_market(tmp_path, n=150, epoch=EPOCH, end=END)
    md.ensure_current()
    data_engine.set_market(md)
    yield md
    data_engine.set_market(None)


def test_one_symbol_never_builds_a_whole_market_panel(market: MarketData) -> None:
    md = market
    res = scan(ScanConfig(top_n=5, lookback_days=120, min_history=100), md)  # the scan's panel files
    files = _files(md)
    assert files
    md.clear_memory()
    sym = str(res.frame["Symbol"].iloc[0])
    earlier = dt.date(2026, 9, 1)
    with md.request() as c:
        got = data_engine.get_price_history(sym, 60, as_of=earlier)
    assert got is not None and len(got) == 60
    assert _files(md) == files  # the scan's panel files are untouched
    assert _whole_panels(md) == 0
    assert c.requested == 60 and c.served["store"] == 60
    # Exactly the bars a whole-market panel has for that symbol.
    whole = md.panel(earlier, 60)
    i = whole.symbols.tolist().index(sym)
    pd.testing.assert_frame_equal(got, whole.frame(i))
    # A few symbols at once, unknown ones left out, in the caller's order.
    syms = [*res.frame["Symbol"].iloc[1:4].tolist(), "NOPE"]
    md.clear_memory()
    batch = data_engine.get_price_history_batch(syms[::-1], 30)
    assert list(batch) == syms[:3][::-1]
    full = md.panel(md.resolve_as_of(None), 30)
    for s in syms[:3]:
        pd.testing.assert_frame_equal(batch[s], full.frame(full.symbols.tolist().index(s)))


def test_days_above_the_stored_sessions_is_an_error_naming_the_bound(market: MarketData
                                                                     ) -> None:
    n = len(market.store.stored_sessions())
    assert data_engine.get_price_history("SPY", n) is not None
    with pytest.raises(ConfigError, match=f"days: {n + 1} is more than the {n} stored sessions"):
        data_engine.get_price_history("SPY", n + 1)


def test_lookback_above_the_stored_sessions_is_capped_with_a_note(market: MarketData) -> None:
    n = len(market.store.stored_sessions())
    capped = scan(ScanConfig(lookback_days=5000, min_history=100, top_n=10), market)
    assert f"lookback_days=5000 is more than the {n} stored sessions: loaded {n}" \
        in capped.message
    widths = [v[0].close.shape[1] for v in market.memory._items.values()
              if isinstance(v[0], Panel)]
    assert max(widths) == n  # nothing wider than the store
    exact = scan(ScanConfig(lookback_days=n, min_history=100, top_n=10), market)
    pd.testing.assert_frame_equal(capped.frame, exact.frame)
    assert np.isfinite(capped.frame["SMA50"]).all()
