"""The values in the scan table equal TA-Lib's last value on the seed API's bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib

from technic_v4 import data_engine
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.scanner_core import run_scan
from technic_v4.universe.gics import TYPES


def _close(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


@pytest.fixture(scope="module")
def scanned(small_market: MarketData) -> pd.DataFrame:
    data_engine._market = small_market
    try:
        # Low bars so that young listings (short histories) are in the table too.
        df, _ = run_scan(ScanConfig(min_history=30, min_price=0, min_dollar_volume=0,
                                    min_market_cap=0, max_stale_sessions=5, types=TYPES))
    finally:
        data_engine._market = None
    return df


def test_table_covers_short_and_gapped_histories(scanned: pd.DataFrame,
                                                 seed_api: MarketData) -> None:
    assert (scanned["Bars"] < 200).sum() >= 3  # young listings
    assert (scanned["Bars"] == 300).sum() > 100
    # Gapped: 300 bars that span more than 300 sessions (a session missing from the vendor).
    hist = data_engine.get_price_history_batch(scanned["Symbol"].tolist(), 300)
    spans = [len(seed_api.store.stored_sessions()[
        seed_api.store.stored_sessions() >= np.datetime64(f.index[0].date(), "D")])
        for f in hist.values() if len(f) == 300]
    assert sum(sp > 300 for sp in spans) >= 3


def test_every_indicator_equals_talib(scanned: pd.DataFrame, seed_api: MarketData) -> None:
    hist = data_engine.get_price_history_batch(scanned["Symbol"].tolist(), 300)
    checked = 0
    for row in scanned.itertuples(index=False):
        bars = hist[row.Symbol]
        assert len(bars) == row.Bars
        h, lo, c = (bars[f].to_numpy(np.float64) for f in ("High", "Low", "Close"))
        macd, sig, hst = talib.MACD(c, 12, 26, 9)
        up, mid, dn = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        want = {
            "SMA20": talib.SMA(c, 20), "SMA50": talib.SMA(c, 50), "SMA200": talib.SMA(c, 200),
            "EMA21": talib.EMA(c, 21), "RSI14": talib.RSI(c, 14), "MACD": macd,
            "MACDSignal": sig, "MACDHist": hst, "ATR14": talib.ATR(h, lo, c, 14),
            "ADX14": talib.ADX(h, lo, c, 14), "PlusDI14": talib.PLUS_DI(h, lo, c, 14),
            "MinusDI14": talib.MINUS_DI(h, lo, c, 14), "BBUpper": up, "BBMiddle": mid,
            "BBLower": dn,
        }
        got = row._asdict()
        for col, series in want.items():
            assert _close(got[col], series[-1]), (row.Symbol, col, got[col], series[-1])
            checked += 1
        assert got["High52W"] == bars["High"].tail(252).max()
        assert got["Low52W"] == bars["Low"].tail(252).min()
        lr = np.diff(np.log(c[-21:]))
        assert _close(got["RealizedVol20"], float(np.std(lr, ddof=1) * np.sqrt(252) * 100))
        assert _close(got["Return21D"], (c[-1] / c[-22] - 1) * 100)
    assert checked == 15 * len(scanned)
