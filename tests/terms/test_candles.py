"""cdl_<name>: TA-Lib's own values at every bar of every row of a real synthetic market."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError
from technic_v4.terms.catalog import CANDLESTICKS
from technic_v4.terms.kernels import Bars, candles
from technic_v4.testing import END


def _bars(md: MarketData, n: int = 300) -> Bars:
    p = md.panel(END, n)
    return Bars(p.open, p.high, p.low, p.close, p.volume, p.day)


def _talib_row(name: str, bars: Bars, r: int, *extra: float) -> np.ndarray:
    """talib on the row's own bars (what get_price_history_batch returns), as float."""
    keep = bars.day[r] >= 0
    f = getattr(talib, f"CDL{name.upper()}")
    return f(bars.open[r, keep], bars.high[r, keep], bars.low[r, keep], bars.close[r, keep],
             *extra).astype(float)


@pytest.fixture(scope="module")
def market_bars(small_market: MarketData) -> Bars:
    return _bars(small_market)


def test_every_catalogue_pattern_has_an_implementation() -> None:
    assert set(candles.IMPLS) == {f"cdl_{n}" for n in CANDLESTICKS}


@pytest.mark.parametrize("name", sorted(CANDLESTICKS))
def test_pattern_equals_talib_at_every_bar(market_bars: Bars, name: str) -> None:
    b = market_bars
    got = candles.IMPLS[f"cdl_{name}"](b, (), {})
    assert got.shape == b.close.shape
    look = CANDLESTICKS[name][0]
    pen = CANDLESTICKS[name][1]
    extra = () if pen is None else (pen,)
    width = b.close.shape[1]
    for r in range(b.close.shape[0]):
        ref = _talib_row(name, b, r, *extra)
        k = len(ref)
        assert np.isnan(got[r, : width - k]).all()  # padding
        row = got[r, width - k:]
        assert np.isnan(row[:look]).all()  # TA-Lib has no value yet (talib writes 0 there)
        np.testing.assert_array_equal(row[look:], ref[look:], err_msg=f"row {r}")
    # TA-Lib's values: +-100; +-80 for an engulfing whose bodies share an edge (TA-Lib >= 0.6);
    # +-200 for a confirmed hikkake.
    assert set(np.unique(got[~np.isnan(got)])) <= {-200.0, -100.0, -80.0, 0.0, 80.0, 100.0, 200.0}


def test_patterns_fire_on_the_market(market_bars: Bars) -> None:
    """The comparison above is not vacuous: most patterns occur somewhere in the market."""
    fired = [n for n in CANDLESTICKS
             if (np.nan_to_num(candles.series(n, market_bars)) != 0).any()]
    assert len(fired) >= 45, sorted(set(CANDLESTICKS) - set(fired))


@pytest.mark.parametrize("name,pen", [("darkcloudcover", 0.2), ("morningstar", 0.0),
                                      ("mathold", 0.8), ("abandonedbaby", 1.0)])
def test_penetration_parameter(market_bars: Bars, name: str, pen: float) -> None:
    got = candles.series(name, market_bars, {"penetration": pen})
    look = CANDLESTICKS[name][0]
    for r in range(0, market_bars.close.shape[0], 7):
        ref = _talib_row(name, market_bars, r, pen)
        np.testing.assert_array_equal(got[r, -len(ref) + look:], ref[look:])


def test_negative_penetration_is_a_config_error(market_bars: Bars) -> None:
    with pytest.raises(ConfigError, match="penetration"):
        candles.series("darkcloudcover", market_bars, {"penetration": -1.0})


def test_padded_short_and_empty_rows() -> None:
    rng = np.random.default_rng(5)
    width = 40
    c = 20 + rng.normal(size=(4, width)).cumsum(axis=1)
    o = c + rng.normal(size=(4, width)) * 0.4
    h = np.maximum(o, c) + rng.random((4, width))
    lo = np.minimum(o, c) - rng.random((4, width))
    day = np.tile(np.arange(width, dtype=np.int32), (4, 1))
    young = {1: 25, 2: 5, 3: 0}  # bars each row has (row 0: all 40)
    for r, k in young.items():
        for a in (o, h, lo, c):
            a[r, : width - k] = np.nan
        day[r, : width - k] = -1
    b = Bars(o, h, lo, c, np.ones_like(c), day)
    for name in ("engulfing", "doji", "3blackcrows", "hikkake", "morningstar"):
        got = candles.series(name, b)
        look = CANDLESTICKS[name][0]
        for r in range(3):
            ref = _talib_row(name, b, r, *(() if CANDLESTICKS[name][1] is None else
                                            (CANDLESTICKS[name][1],)))
            k = len(ref)
            assert np.isnan(got[r, : width - k + look]).all()
            np.testing.assert_array_equal(got[r, width - k + look:], ref[look:])
        assert np.isnan(got[2]).all() if look >= 5 else True  # fewer bars than the lookback
        assert np.isnan(got[3]).all()  # no bars


def test_latest_matches_the_series_on_the_market(market_bars: Bars) -> None:
    """Measured, not guaranteed (see candles.latest): on this market the latest-bar-only call
    gives the full series' last value for every pattern and row."""
    for name in CANDLESTICKS:
        full = candles.series(name, market_bars)[:, -1]
        fast = candles.latest(name, market_bars)
        np.testing.assert_array_equal(fast, full, err_msg=name)


def test_without_the_library_address_talib_gives_the_same_values(
        market_bars: Bars, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = {n: candles.series(n, market_bars) for n in ("engulfing", "eveningstar")}
    monkeypatch.setattr(candles, "_library", lambda: None)
    for name, want in compiled.items():
        np.testing.assert_array_equal(candles.series(name, market_bars), want)
        np.testing.assert_array_equal(candles.latest(name, market_bars), want[:, -1])
