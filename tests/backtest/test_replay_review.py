"""Review: the series replay equals one scan per session over configurations the main test
does not cover (top_n with near_miss, user columns named like standard ones, sort_by,
allow_shorts, only_tradeable, max_symbols, every>1, a range ending before the last stored
session)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from replay_support import REV, build_market, per_session, sessions

from technic_v4.backtest.replay import replay, text_as_str
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData

BASE = {"min_history": 60, "min_market_cap": 0, "min_dollar_volume": 0}


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("replay-review"))
    yield m
    m.close()


CASES = {
    "top_n_near_miss": dict(where="close > sma(close, 50) and RSI14 > 50 and Return21D > 0",
                            near_miss=1, top_n=5),
    "user_named_standard": dict(where="close > sma(close, 20)",
                                columns={"sid": "close * 2", "q": "RSI14",
                                         "pos": "close[1]"}),
    "sort_by_expr": dict(where="RSI14 > 40", sort_by="-Return21D", top_n=7),
    "sort_by_user": dict(columns={"Mom": "close / close[10] - 1"}, sort_by="Mom", top_n=6),
    "shorts_tradeable": dict(allow_shorts=True, only_tradeable=True, min_tech_rating=20),
    "max_symbols": dict(max_symbols=25, top_n=10),
    "scan_columns": dict(where="Signal != 'Avoid' and MarketCap > 1e9 and Sector == 'Industrials'"
                         " and Bars > 100 and Stop < Close",
                         columns={"Up": "close > open", "Who": "Name", "Cap": "MarketCap / 1e9"},
                         near_miss=2),
    "history_fn": dict(where="highest(high, 30) > close and lowest(low, 5) < close",
                       top_n=12),
}


@pytest.mark.parametrize("name", list(CASES))
def test_series_equals_scans(md: MarketData, name: str) -> None:
    cfg = ScanConfig(**BASE, **CASES[name])  # type: ignore[arg-type]
    start, end = dt.date(2026, 1, 12), dt.date(2026, 2, 20)  # ends before the last session
    res = replay(cfg, start, end, every=2, data=md)
    assert res.stats["method"] == "series"
    want = text_as_str(per_session(md, cfg, sessions(md, start, end)[::2]))
    pd.testing.assert_frame_equal(res.matches, want, check_exact=True)


def test_a_user_column_named_asof_is_a_config_error(md: MarketData) -> None:
    """The replay's session column is ``AsOf``: a user column of that name (any case) would
    collide with it (a pandas ValueError from the series method, silently replaced by the
    session in the per-session one); it is refused naming the column."""
    from technic_v4.errors import ConfigError

    for name, method in (("AsOf", "series"), ("AsOf", "per_session"), ("asof", "series")):
        cfg = ScanConfig(**BASE, columns={name: "close * 2"})  # type: ignore[arg-type]
        with pytest.raises(ConfigError) as e:
            replay(cfg, "2026-03-02", "2026-03-04", data=md, method=method)
        assert e.value.field == f"columns.{name}"


@pytest.mark.parametrize(("start", "end"), [
    (dt.date(2026, 1, 2), dt.date(2026, 1, 15)),  # FWD splits on the last replayed session
    (dt.date(2026, 1, 15), dt.date(2026, 1, 30)),  # ... on the first one
    (dt.date(2026, 2, 17), dt.date(2026, 3, 2)),  # REV on the first, S010 on the last
])
def test_split_on_the_range_edges(md: MarketData, start: dt.date, end: dt.date) -> None:
    cfg = ScanConfig(**BASE, where="close > sma(close, 20) and RSI14 > 40",  # type: ignore[arg-type]
                     columns={"Gap": "open / close[1] - 1"})
    res = replay(cfg, start, end, data=md)
    want = text_as_str(per_session(md, cfg, sessions(md, start, end)))
    pd.testing.assert_frame_equal(res.matches, want, check_exact=True)
    slow = replay(cfg, start, end, data=md, method="per_session")
    pd.testing.assert_frame_equal(res.universe, slow.universe, check_exact=True)


def test_sessions_where_nobody_survives(md: MarketData) -> None:
    """Only the delisted listing is requested: after its delisting no listing is scored."""
    cfg = ScanConfig(**BASE, symbols=("S002",))  # type: ignore[arg-type]
    start, end = dt.date(2026, 1, 12), dt.date(2026, 1, 30)
    fast = replay(cfg, start, end, data=md)
    slow = replay(cfg, start, end, data=md, method="per_session")
    pd.testing.assert_frame_equal(fast.matches, slow.matches, check_exact=True)
    pd.testing.assert_frame_equal(fast.universe, slow.universe, check_exact=True)
    pd.testing.assert_frame_equal(fast.regime, slow.regime, check_exact=True)
    assert fast.universe["AsOf"].max() < pd.Timestamp(end)  # sessions without anyone


def test_a_listing_without_bars(tmp_path: Path) -> None:
    """A live reference listing with no stored bar at all (and max_symbols: it has no market
    cap): the series replay equals one scan per session."""
    import copy

    from pit_support import build
    from replay_support import MARKET

    m = copy.deepcopy(MARKET)
    m.raw = m.raw[m.raw["symbol"] != "S007"]
    data = build(tmp_path, m, m.last)
    try:
        for cfg in (ScanConfig(**BASE, top_n=10),  # type: ignore[arg-type]
                    ScanConfig(**BASE, max_symbols=20, top_n=10)):  # type: ignore[arg-type]
            start, end = dt.date(2026, 3, 2), dt.date(2026, 3, 13)
            res = replay(cfg, start, end, data=data)
            want = text_as_str(per_session(data, cfg, sessions(data, start, end)))
            pd.testing.assert_frame_equal(res.matches, want, check_exact=True)
            slow = replay(cfg, start, end, data=data, method="per_session")
            pd.testing.assert_frame_equal(res.universe, slow.universe, check_exact=True)
    finally:
        data.close()


@pytest.mark.parametrize("method", ["series", "per_session"])
@pytest.mark.parametrize("end", [dt.date(2026, 2, 20), dt.date(2026, 2, 13)])
def test_market_cap_in_a_screen_uses_the_shares_of_each_session(md: MarketData, method: str,
                                                                 end: dt.date) -> None:
    """``market_cap`` (``MarketCap`` in a where) is shares x close on every bar, the shares as
    of the scan's session (``pipeline.screen_ref``): before REV's 1:5 reverse split it had 5x
    the shares the reference holds today. The replay used today's shares."""
    cfg = ScanConfig(**BASE, where="MarketCap > 1e9 and market_cap[5] > 1e9")  # type: ignore[arg-type]
    start = dt.date(2026, 2, 10)  # REV splits on 2026-02-17: inside the range, or after it
    res = replay(cfg, start, end, data=md, method=method)
    want = text_as_str(per_session(md, cfg, sessions(md, start, end)))
    rev = want[want["Symbol"] == REV]
    assert (rev["AsOf"] < pd.Timestamp(2026, 2, 17)).any()  # matched with its shares then
    pd.testing.assert_frame_equal(res.matches, want, check_exact=True)


def test_a_listing_without_a_list_date(tmp_path: Path) -> None:
    """A reference row whose ListDate is unknown (NULL in the store: a vendor without it, or
    the files provider for a symbol without bars) is in the scan's universe (``listed after
    as-of`` cannot hold); the series replay dropped it from every session."""
    import dataclasses

    from pit_support import PitMarket, build
    from replay_support import MARKET

    class NoListDate(PitMarket):
        def reference(self, through: dt.date) -> pd.DataFrame:
            r = super().reference(through)
            r.loc[r["Symbol"] == "S007", "ListDate"] = pd.NaT
            return r

    m = NoListDate(**{f.name: getattr(MARKET, f.name) for f in dataclasses.fields(MARKET)})
    data = build(tmp_path, m, m.last)
    try:
        assert data.reference().set_index("Symbol")["ListDate"].isna()["S007"]
        cfg = ScanConfig(**BASE, symbols=("S007", "S008", "S009"))  # type: ignore[arg-type]
        start, end = dt.date(2026, 3, 2), dt.date(2026, 3, 6)
        want = text_as_str(per_session(data, cfg, sessions(data, start, end)))
        assert (want["Symbol"] == "S007").any()
        res = replay(cfg, start, end, data=data)
        pd.testing.assert_frame_equal(res.matches, want, check_exact=True)
        slow = replay(cfg, start, end, data=data, method="per_session")
        pd.testing.assert_frame_equal(res.universe, slow.universe, check_exact=True)
    finally:
        data.close()


@pytest.mark.parametrize("step", ["pre-screen", "indicators"])
def test_cancel_mid_pass(md: MarketData, step: str) -> None:
    """Cancel after the first chunk of a pass: ScanCancelled, and the
    same replay afterwards still equals its uncancelled self."""
    from technic_v4.errors import ScanCancelled

    seen: list[str] = []

    def progress(s: str, done: int, total: int) -> None:
        seen.append(s)

    cfg = ScanConfig(**BASE, top_n=5)  # type: ignore[arg-type]
    with pytest.raises(ScanCancelled, match=step):
        replay(cfg, "2025-06-02", "2026-03-31", data=md, on_progress=progress,
               cancel=lambda: seen.count(step) >= 1)
    a = replay(cfg, "2026-03-02", "2026-03-31", data=md)
    b = replay(cfg, "2026-03-02", "2026-03-31", data=md, method="per_session")
    pd.testing.assert_frame_equal(a.matches, b.matches, check_exact=True)


def test_two_splits_every_fourth_session_with_market_cap(md: MarketData) -> None:
    """S010 splits twice inside the range (and FWD, REV and SPY once), sampled every 4th
    session: views of three epochs per listing, a market_cap screen across them."""
    cfg = ScanConfig(**BASE, where="market_cap > 2e9 or sma(close, 10) > close",  # type: ignore[arg-type]
                     columns={"Cap": "market_cap[3] / 1e9"}, sort_by="Cap", top_n=40)
    start, end = dt.date(2025, 12, 1), dt.date(2026, 3, 31)
    res = replay(cfg, start, end, every=4, data=md)
    assert res.stats["epoch_groups"] > 3
    want = text_as_str(per_session(md, cfg, sessions(md, start, end)[::4]))
    pd.testing.assert_frame_equal(res.matches, want, check_exact=True)
