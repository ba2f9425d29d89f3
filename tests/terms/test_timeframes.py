"""Weekly and monthly bars: against a plain pandas resample of each row's own bars."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from technic_v4.data.market import MarketData
from technic_v4.terms.kernels import Bars
from technic_v4.terms.kernels.timeframes import resample
from technic_v4.testing import END

FIELDS = ("open", "high", "low", "close", "volume")
RULE = {"weekly": "W-SUN", "monthly": "MS"}  # Monday-Sunday weeks; calendar months


def _days(dates: list[str]) -> np.ndarray:
    return np.array(dates, dtype="datetime64[D]").astype(np.int64).astype(np.int32)


def _bars_from_rows(rows: list[tuple[list[str], np.ndarray]]) -> Bars:
    """Right-aligned bars from (dates, (k, 5) OHLCV values) per row."""
    width = max(len(d) for d, _ in rows)
    day = np.full((len(rows), width), -1, dtype=np.int32)
    vals = np.full((5, len(rows), width), np.nan)
    for r, (dates, v) in enumerate(rows):
        if dates:
            day[r, width - len(dates):] = _days(dates)
            vals[:, r, width - len(dates):] = v.T
    return Bars(*vals, day=day)


def _reference(bars: Bars, timeframe: str) -> list[pd.DataFrame]:
    """Per row: pandas' resample of the row's real bars, periods without a session dropped."""
    out = []
    for r in range(bars.day.shape[0]):
        keep = bars.day[r] >= 0
        frame = pd.DataFrame({f: getattr(bars, f)[r, keep] for f in FIELDS},
                             index=pd.to_datetime(bars.day[r, keep].astype("datetime64[D]")))
        frame["day"] = bars.day[r, keep]
        res = frame.resample(RULE[timeframe]).agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
             "day": ["last", "count"]})
        res.columns = [*FIELDS, "day", "count"]
        out.append(res[res["count"] > 0].drop(columns="count"))
    return out


def _assert_matches(bars: Bars, timeframe: str) -> None:
    got = resample(bars, timeframe)  # type: ignore[arg-type]
    ref = _reference(bars, timeframe)
    width = got.day.shape[1]
    assert width == max(1, max(len(f) for f in ref))
    for r, frame in enumerate(ref):
        k = len(frame)
        assert (got.day[r, : width - k] == -1).all()
        for f in FIELDS:
            assert np.isnan(getattr(got, f)[r, : width - k]).all()
            np.testing.assert_array_equal(getattr(got, f)[r, width - k:], frame[f].to_numpy(),
                                          err_msg=f"row {r} {f}")
        np.testing.assert_array_equal(got.day[r, width - k:], frame["day"].to_numpy())
    assert got.day.dtype == np.int32


@pytest.mark.parametrize("timeframe", ["weekly", "monthly"])
def test_resample_equals_pandas_over_a_market(small_market: MarketData, timeframe: str) -> None:
    p = small_market.panel(END, 300)
    valid = p.day >= 0
    assert (~valid[:, 0]).any(), "the market should hold young listings (padded rows)"
    sessions = np.unique(p.day[valid])
    pos = np.searchsorted(sessions, p.day)
    gapped = (valid[:, 1:] & valid[:, :-1] & (np.diff(pos, axis=1) > 1)).any(axis=1)
    assert gapped.any(), "the market should hold rows with halts"
    _assert_matches(Bars(p.open, p.high, p.low, p.close, p.volume, p.day), timeframe)


def _ohlcv(k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = 50 + rng.normal(size=k).cumsum()
    o = c + rng.normal(size=k)
    return np.column_stack([o, np.maximum(o, c) + 1, np.minimum(o, c) - 1, c,
                            rng.integers(1, 1000, k)]).astype(float)


def test_hand_built_rows_gaps_halts_year_end_and_young_listings() -> None:
    sessions = pd.bdate_range("2025-12-01", "2026-02-27")
    iso = [d.strftime("%Y-%m-%d") for d in sessions]
    halted = [d for d in iso if not "2025-12-15" <= d <= "2026-01-09"]  # four weeks without bars
    rows = [
        (iso, _ohlcv(len(iso), 1)),  # across the year end (week of Dec 29 - Jan 2 is one week)
        (halted, _ohlcv(len(halted), 2)),
        (iso[-1:], _ohlcv(1, 3)),  # listed today: one daily bar is one weekly and monthly bar
        (iso[-7:], _ohlcv(7, 4)),  # young listing: parts of two weeks
        ([], np.empty((0, 5))),  # no bars at all
    ]
    bars = _bars_from_rows(rows)
    for timeframe in ("weekly", "monthly"):
        _assert_matches(bars, timeframe)
    weekly = resample(bars, "weekly")
    # The last week (Mon Feb 23 - Fri Feb 27) is the latest bar: open of Monday, close of Friday.
    v = rows[0][1]
    assert weekly.open[0, -1] == v[-5, 0] and weekly.close[0, -1] == v[-1, 3]
    assert weekly.volume[0, -1] == v[-5:, 4].sum()
    assert weekly.day[0, -1] == _days(["2026-02-27"])[0]
    year_end = weekly.day[0] == _days(["2026-01-02"])[0]
    assert year_end.sum() == 1  # Dec 29 2025 - Jan 2 2026 is one weekly bar
    # The halt leaves no weekly bars for the four missing weeks.
    assert (weekly.day[1] >= 0).sum() == (weekly.day[0] >= 0).sum() - 4
    assert (weekly.day[4] == -1).all()


def test_unfinished_period_is_the_latest_bar() -> None:
    # Wednesday as the last session: the week so far (Mon-Wed) and the month so far.
    dates = ["2026-03-30", "2026-03-31", "2026-04-01"]
    v = np.array([[10, 12, 9, 11, 100], [11, 13, 10, 12, 200], [12, 15, 11, 14, 300]], float)
    bars = _bars_from_rows([(dates, v)])
    w = resample(bars, "weekly")
    assert w.day.shape == (1, 1)
    assert (w.open[0, 0], w.high[0, 0], w.low[0, 0], w.close[0, 0], w.volume[0, 0]) == (
        10, 15, 9, 14, 600)
    m = resample(bars, "monthly")
    assert m.day.shape == (1, 2)
    assert m.close[0, 0] == 12 and m.open[0, 1] == 12 and m.close[0, 1] == 14
    assert m.day[0, 1] == (np.datetime64("2026-04-01") - np.datetime64("1970-01-01")).astype(int)
    assert dt.date(1970, 1, 1) + dt.timedelta(int(m.day[0, 0])) == dt.date(2026, 3, 31)
