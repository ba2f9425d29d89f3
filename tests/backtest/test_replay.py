"""The replay equals one scan per session (``lookback_days=None``) over a market whose range
holds forward and reverse splits, a dividend and a delisting; truncating the store changes
nothing up to its end; bad input names its field."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from replay_support import CONFIG, END, FWD, GONE, REV, START, build_market, per_session, sessions

from technic_v4.backtest.replay import replay, text_as_str
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, ScanCancelled
from technic_v4.history import scan_history
from technic_v4.pipeline import scan

PLAIN = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0, top_n=8)


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("replay"))
    yield m
    m.close()


def test_range_holds_splits_and_a_delisting(md: MarketData) -> None:
    acts = md.store.actions()
    inside = acts[(acts["ExDate"] > pd.Timestamp(START)) & (acts["ExDate"] <= pd.Timestamp(END))]
    assert {FWD, REV} <= set(inside.loc[inside["Type"] == "split", "Symbol"])
    gone = md.reference().set_index("Symbol").loc[GONE, "Delisted"]
    assert pd.Timestamp(START) < gone < pd.Timestamp(END)


def test_replay_equals_one_scan_per_session(md: MarketData) -> None:
    days = sessions(md, START, END)
    res = replay(CONFIG, START, END, data=md)
    assert res.stats["method"] == "series"
    expected = text_as_str(per_session(md, CONFIG, days))
    pd.testing.assert_frame_equal(res.matches, expected, check_exact=True)
    assert list(res.sessions.date) == days
    # A split listing is scored before and after its ex-date (its view re-adjusted as of D).
    split_day = pd.Timestamp(dt.date(2026, 1, 15))
    fwd = res.universe[res.universe["Symbol"] == FWD]
    assert (fwd["AsOf"] < split_day).any() and (fwd["AsOf"] >= split_day).any()
    assert res.matches["Failed"].ne("").any()  # near_miss rows are there too


def test_scan_history_agrees(md: MarketData) -> None:
    days = [dt.date(2026, 1, 14), dt.date(2026, 1, 15), dt.date(2026, 2, 17), END]
    cfg = CONFIG.model_copy(update={"lookback_days": None})
    hist = text_as_str(scan_history(cfg, days, md))
    res = replay(CONFIG, START, END, data=md).matches
    got = res[res["AsOf"].isin(pd.to_datetime(days))].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, hist, check_exact=True)


def test_universe_and_regime_equal_the_scan_stages(md: MarketData) -> None:
    fast = replay(PLAIN, "2025-10-01", END, every=3, data=md)
    slow = replay(PLAIN, "2025-10-01", END, every=3, data=md, method="per_session")
    assert fast.stats["method"] == "series" and slow.stats["method"] == "per_session"
    pd.testing.assert_frame_equal(fast.matches, slow.matches, check_exact=True)
    pd.testing.assert_frame_equal(fast.universe, slow.universe, check_exact=True)
    pd.testing.assert_frame_equal(fast.regime, slow.regime, check_exact=True)
    assert fast.universe.groupby("AsOf").size().min() > 50
    assert (fast.matches.groupby("AsOf").size() == 8).all()
    # Each row's listing (its reference row): the same from both methods, and that row's symbol.
    np.testing.assert_array_equal(fast.match_listing, slow.match_listing)
    np.testing.assert_array_equal(fast.universe_listing, slow.universe_listing)
    names = md.reference()["Symbol"].astype(str).to_numpy()
    assert (names[fast.match_listing] == fast.matches["Symbol"].astype(str).to_numpy()).all()
    assert (names[fast.universe_listing] == fast.universe["Symbol"].astype(str).to_numpy()).all()


def test_every_n_sessions_are_those_rows_of_the_daily_replay(md: MarketData) -> None:
    daily = replay(PLAIN, START, END, data=md).matches
    sparse = replay(PLAIN, START, END, every=7, data=md)
    days = sessions(md, START, END)[::7]
    assert list(sparse.sessions.date) == days
    want = daily[daily["AsOf"].isin(pd.to_datetime(days))].reset_index(drop=True)
    pd.testing.assert_frame_equal(sparse.matches, want, check_exact=True)


def test_truncating_the_store_changes_nothing_up_to_its_end(md: MarketData,
                                                              tmp_path: Path) -> None:
    cut = dt.date(2026, 1, 30)  # after FWD's split and GONE's delisting, before REV's split
    then = build_market(tmp_path, end=cut)
    try:
        short = replay(CONFIG, START, cut, data=then)
    finally:
        then.close()
    full = replay(CONFIG, START, END, data=md)
    want = full.matches[full.matches["AsOf"] <= pd.Timestamp(cut)].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.matches, want, check_exact=True)
    u = full.universe[full.universe["AsOf"] <= pd.Timestamp(cut)].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.universe, u, check_exact=True)


def test_cross_sectional_screen_runs_per_session_and_exactly(md: MarketData) -> None:
    cfg = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0,
                     where="rank(Return21D) >= 70 and close > sma(close, 20)")
    res = replay(cfg, "2026-03-02", END, data=md)
    assert res.stats["method"] == "per_session"
    assert "rank()" in res.stats["per_session_reason"]
    pd.testing.assert_frame_equal(
        res.matches, text_as_str(per_session(md, cfg, sessions(md, dt.date(2026, 3, 2), END))),
        check_exact=True)
    with pytest.raises(ConfigError, match="method"):
        replay(cfg, "2026-03-02", END, data=md, method="series")


def test_a_screen_that_never_matches_is_an_explained_empty_result(md: MarketData) -> None:
    cfg = ScanConfig(min_history=60, min_market_cap=0, where="close > 1e9")
    res = replay(cfg, "2026-03-02", END, data=md)
    assert res.matches.empty
    assert list(res.matches.columns)[:3] == ["AsOf", "Symbol", "Name"]
    assert "never matched" in res.message and "where: close > 1e9" in res.message
    assert len(res.universe) > 0


@pytest.mark.parametrize(("args", "field"), [
    (("2026-03-10", "2026-03-02"), "start"),
    (("2020-01-02", "2026-03-02"), "start"),
    (("2026-03-02", "2027-01-04"), "end"),
])
def test_bad_range_names_the_field(md: MarketData, args: tuple[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        replay(PLAIN, *args, data=md)
    assert e.value.field == field


@pytest.mark.parametrize(("kw", "field"), [({"every": 0}, "every"), ({"method": "fast"}, "method")])
def test_bad_options_name_the_field(md: MarketData, kw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        replay(PLAIN, START, END, data=md, **kw)  # type: ignore[arg-type]
    assert e.value.field == field


def test_progress_and_cancel(md: MarketData) -> None:
    seen: list[tuple[str, int, int]] = []
    replay(PLAIN, START, END, data=md, on_progress=lambda *a: seen.append(a))
    assert {s for s, _, _ in seen} >= {"pre-screen", "indicators"}
    stop = threading.Event()
    stop.set()
    with pytest.raises(ScanCancelled):
        replay(PLAIN, START, END, data=md, cancel=stop)
    with pytest.raises(ScanCancelled):
        replay(PLAIN, START, END, data=md, method="per_session", cancel=lambda: True)


def test_lookback_none_reads_every_stored_bar(md: MarketData) -> None:
    """``lookback_days=None`` is the scan with as many bars as the store holds."""
    n = md.max_bars()
    cfg = ScanConfig(min_history=60, min_market_cap=0, as_of_date=END)
    every = scan(cfg.model_copy(update={"lookback_days": None}), md, max_workers=1)
    explicit = scan(cfg.model_copy(update={"lookback_days": n}), md, max_workers=1)
    pd.testing.assert_frame_equal(every.frame, explicit.frame, check_exact=True)
    assert every.frame["Bars"].max() == n
    assert not any("lookback_days" in x for x in every.stats["notes"])
    assert ScanConfig(lookback_days=None, min_history=4000).bars_needed >= 10**6
    with pytest.raises(ConfigError, match="lookback_days"):
        ScanConfig(lookback_days=10)
    assert np.isfinite(every.frame["SMA200"]).any()


def test_embedded_market_with_its_actions(tmp_path: Path) -> None:
    """The embedded synthetic market (splits, dividends, delistings of its own): the replay over
    a month around one of its splits equals one scan per session."""
    from technic_v4.testing import make_market

    m = make_market(tmp_path, n=200, epoch=dt.date(2024, 6, 3))
    try:
        m.ensure_current(progress=False)
        acts = m.store.actions()
        splits = acts[(acts["Type"] == "split") & (acts["ExDate"] > pd.Timestamp("2025-09-01"))]
        assert len(splits), "the embedded market should split a listing within a year"
        stored = [d.astype(dt.date) for d in m.store.stored_sessions()]
        at = int(np.searchsorted(np.array(stored, dtype="datetime64[D]"),
                                 np.datetime64(splits["ExDate"].iloc[0].date(), "D")))
        start, end = stored[max(0, at - 12)], stored[min(len(stored) - 1, at + 12)]
        cfg = ScanConfig(min_history=60, where="close > sma(close, 20) and RSI14 > 40",
                         top_n=30)
        res = replay(cfg, start, end, data=m)
        assert res.stats["epoch_groups"] > 1  # a listing's view changes basis inside the range
        pd.testing.assert_frame_equal(
            res.matches, text_as_str(per_session(m, cfg, sessions(m, start, end))),
            check_exact=True)
    finally:
        m.close()


def test_views_as_of_the_last_session_equal_panel_at(md: MarketData) -> None:
    """The chunk views cut without ``Panel.at`` (rows as they are, padded) and the session
    columns from the compiled walk equal ``Panel.at`` and a per-row searchsorted."""
    import importlib

    from technic_v4.backtest import series as ser

    rp = importlib.import_module("technic_v4.backtest.replay")  # the package exports replay()

    days = sessions(md, dt.date(2025, 10, 1), END)
    panel = md.panel(END, ScanConfig(lookback_days=None).bars_needed)
    rows = np.arange(len(panel.sids))
    fast = rp._padded(panel, rows, ser.PAD)
    slow = panel.rows(rows).at(panel.as_of, panel.close.shape[1] + ser.PAD)
    for f in ("open", "high", "low", "close", "volume", "day"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(slow, f), err_msg=f)
    assert panel.raw is not None and len(panel.raw.rows)  # the market's splits were applied
    dq = np.array(days, dtype="datetime64[D]").astype(np.int64)
    at = np.full((len(rows), len(dq)), -1, dtype=np.int64)
    q0 = np.zeros(len(rows), dtype=np.int64)
    rp._columns_at(fast.day, dq, q0, q0 + len(dq), at)
    for i in rows:
        d = fast.day[i]
        first = int(np.searchsorted(d >= 0, True))
        k = np.searchsorted(d[first:], dq, side="right")
        np.testing.assert_array_equal(at[i], np.where(k > 0, first + k - 1, -1))


def test_shares_by_session_equal_shares_as_of_each_day(md: MarketData) -> None:
    import importlib

    rp = importlib.import_module("technic_v4.backtest.replay")
    days = np.array(sessions(md, START, END), dtype="datetime64[D]")
    got = rp.shares_by_session(md, md.reference(), days)
    base = md.reference()["SharesOutstanding"].to_numpy(np.float64)
    changed = 0
    for q, d in enumerate(days):
        want = md.shares_as_of(d.astype(dt.date))
        np.testing.assert_array_equal(got[q], base if want is None else want)
        changed += want is not None
    assert 0 < changed < len(days)  # the range holds splits: shares change inside it


@given(st.lists(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 0.5, 2.0, 7.0]),
                         min_size=6, max_size=6), min_size=1, max_size=8))
def test_average_ranks_equal_pandas(rows: list[list[float]]) -> None:
    import importlib

    rp = importlib.import_module("technic_v4.backtest.replay")
    x = np.array(rows, dtype=np.float64)
    want = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
    for workers in (1, 2):
        np.testing.assert_array_equal(rp.average_ranks(x, workers), want)


@given(st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 40_000)), max_size=40),
       st.booleans())
def test_session_symbol_order_is_a_stable_lexsort(pairs: list[tuple[int, int]],
                                                  small: bool) -> None:
    import importlib

    rp = importlib.import_module("technic_v4.backtest.replay")
    q = np.array([p[0] for p in pairs], dtype=np.int64)
    code = np.array([p[1] for p in pairs], dtype=np.int64)
    if small:  # the radix path (keys within 16 bits)
        q, code = q % 5000, code % 6000
    np.testing.assert_array_equal(rp.session_symbol_order(q, code), np.lexsort((code, q)))
