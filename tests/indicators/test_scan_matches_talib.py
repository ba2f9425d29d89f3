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


def _same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


def test_compute_reads_rows_in_place_with_the_values_of_a_copied_panel(
        full_market: MarketData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan computes its rows where they lie in the whole-market panel, block by block
    and chunk by chunk: every column is bit-identical to computing on a copy of those rows
    (the issue-8 way) and does not depend on the block size, the workers or the row order."""
    from technic_v4.execution import LocalBackend
    from technic_v4.indicators import compute as cm

    panel = full_market.panel(full_market.resolve_as_of(None), 300)
    rng = np.random.default_rng(3)
    rows = rng.permutation(len(panel.symbols))[: len(panel.symbols) * 2 // 3]
    copied = cm.compute(panel.rows(rows), LocalBackend(1))
    assert len(copied["Close"]) == len(rows) > cm.BLOCK_ROWS * 4
    # The copy goes through the same per-block code: pin it to one block for the reference.
    monkeypatch.setattr(cm, "BLOCK_ROWS", len(rows))
    whole = cm.compute(panel.rows(rows), LocalBackend(1))
    _same_bits(copied, whole)
    for block in (1, 7, 128):
        monkeypatch.setattr(cm, "BLOCK_ROWS", block)
        for workers in (1, 2, 3):
            _same_bits(cm.compute(panel, LocalBackend(workers), rows=rows), whole)
    monkeypatch.undo()
    everything = cm.compute(panel, LocalBackend(2))
    _same_bits({k: v[rows] for k, v in everything.items()}, whole)
    # Independent references: the public kernels over the copied rows' whole series, and
    # plain numpy over all rows at once.
    from technic_v4.indicators import kernels as k

    sub = panel.rows(rows)
    _, minus, adx = k.dmi(sub.high, sub.low, sub.close, 14)
    upper = k.bbands(sub.close, 20, 2.0, 2.0)[0]
    want = {"SMA200": k.sma(sub.close, 200), "RSI14": k.rsi(sub.close, 14),
            "MACDHist": k.macd(sub.close, 12, 26, 9)[2], "ADX14": adx, "MinusDI14": minus,
            "BBUpper": upper, "ATR14": k.atr(sub.high, sub.low, sub.close, 14)}
    _same_bits({key: whole[key] for key in want}, {key: v[:, -1] for key, v in want.items()})
    _same_bits({"DollarVolume20": whole["DollarVolume20"], "High52W": whole["High52W"]},
               {"DollarVolume20": (sub.close[:, -20:] * sub.volume[:, -20:]).mean(axis=1),
                "High52W": np.fmax.reduce(sub.high[:, -252:], axis=1)})
    empty = cm.compute(panel, LocalBackend(2), rows=np.array([], dtype=np.int64))
    assert empty.keys() == whole.keys() and all(len(v) == 0 for v in empty.values())
