"""Point in time, as it was: scans and price histories as of D see the bars adjusted only for
the actions up to D, the listings trading on D (delisted ones included), and market cap as of
D. Stores are written through the Store API from a market whose truth is known
(``pit_support``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pit_support import LAST, PitMarket, build

from technic_v4 import data_engine
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.panel import FIELDS, Panel
from technic_v4.errors import ConfigError
from technic_v4.history import scan_history
from technic_v4.pipeline import scan

D = dt.date(2026, 5, 1)  # the as-of date in the past
BETWEEN = dt.date(2026, 6, 15)  # after the forward split, before the reverse one
FWD, REV, PAYER = "S000", "S001", "S002"

MARKET = PitMarket(
    n=24,
    # A forward 4:1 and, on a name that fell to under a dollar as traded, a reverse 1:10.
    splits={FWD: [(dt.date(2026, 6, 1), 4.0)], REV: [(dt.date(2026, 7, 1), 0.1)]},
    dividends={PAYER: [(dt.date(2025, 11, 3), 0.4), (dt.date(2026, 2, 2), 0.4),
                       (dt.date(2026, 5, 4), 0.45), (dt.date(2026, 8, 3), 0.45)],
               FWD: [(dt.date(2026, 3, 2), 0.3), (dt.date(2026, 6, 1), 0.1)]},
    start_price={REV: 40.0},
    drift={REV: -0.0049},
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MarketData]]:
    root = tmp_path_factory.mktemp("pit")
    mds = {"full": build(root / "full", MARKET, LAST),  # raw bars + actions, through today
           "then": build(root / "then", MARKET, D),  # the store as it was on D
           "old": build(root / "old", MARKET, LAST, adjusted=True)}  # pre-issue-10 storage
    yield mds
    for md in mds.values():
        md.close()


@pytest.fixture
def engine(stores: dict[str, MarketData]) -> Iterator[MarketData]:
    md = stores["full"]
    data_engine._market = md
    yield md
    data_engine._market = None


def _frame(res_frame: pd.DataFrame) -> pd.DataFrame:
    return res_frame.reset_index(drop=True)


def test_splits_after_d_change_nothing_in_a_scan_as_of_d(stores: dict[str, MarketData]
                                                         ) -> None:
    past = scan(ScanConfig(as_of_date=D), stores["full"])
    then = scan(ScanConfig(), stores["then"])
    assert past.stats["as_of"] == then.stats["as_of"] == str(D)
    assert FWD in set(past.frame["Symbol"])
    # Every column, exact: prices, indicators, plans, market cap (shares as of D).
    pd.testing.assert_frame_equal(past.frame, then.frame, check_exact=True)
    # The reverse-split name traded under $1 on D: the min-price screen dropped it then.
    assert REV not in set(past.frame["Symbol"])


def test_the_screen_market_cap_as_of_d_uses_the_shares_of_d(stores: dict[str, MarketData]
                                                           ) -> None:
    """The screen language's ``market_cap`` (shares x close) as of D: shares as of D, like the
    MarketCap column, not today's (a later 4:1 split would quadruple it)."""
    cfg = ScanConfig(columns={"Cap": "market_cap", "CapThen": "market_cap[5]"})
    past = scan(cfg.model_copy(update={"as_of_date": D}), stores["full"]).frame
    then = scan(cfg, stores["then"]).frame
    assert FWD in set(past["Symbol"])
    pd.testing.assert_frame_equal(past, then, check_exact=True)
    np.testing.assert_array_equal(past["Cap"], past["MarketCap"])


def test_the_daily_run_of_a_past_session_uses_the_shares_of_that_session(
        stores: dict[str, MarketData]) -> None:
    """A catch-up run as of D equals the scan as of D (MarketCap and the screen's market_cap
    with the shares of D, not those of a later split)."""
    from technic_v4.daily.run import evaluate_screens

    cfg = ScanConfig(where="close > 0", columns={"Cap": "market_cap"})
    got = evaluate_screens({"s": cfg}, stores["full"], D)["s"]
    want = scan(cfg, stores["then"]).frame
    assert isinstance(got, pd.DataFrame) and FWD in set(got["Symbol"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)


def test_the_old_adjusted_storage_rewrote_the_past(stores: dict[str, MarketData]) -> None:
    """The bias this fixes: with bars stored split-adjusted to today, a scan as of D saw the
    reverse-split name at ten times the price it traded at."""
    old = scan(ScanConfig(as_of_date=D), stores["old"]).frame
    assert REV in set(old["Symbol"])
    pit = scan(ScanConfig(as_of_date=D), stores["full"]).frame
    assert REV not in set(pit["Symbol"])


def test_a_scan_after_the_splits_equals_todays_behaviour(stores: dict[str, MarketData]) -> None:
    now = scan(ScanConfig(), stores["full"])
    old = scan(ScanConfig(), stores["old"])
    assert {FWD, REV} <= set(now.frame["Symbol"])
    pd.testing.assert_frame_equal(now.frame, old.frame, check_exact=True)


def test_price_history_as_of_d_is_what_the_chart_showed(engine: MarketData,
                                                        stores: dict[str, MarketData]) -> None:
    got = data_engine.get_price_history_batch([FWD, REV, PAYER], 120, as_of=D)
    data_engine._market = stores["then"]
    want = data_engine.get_price_history_batch([FWD, REV, PAYER], 120)
    for s in (FWD, REV, PAYER):
        pd.testing.assert_frame_equal(got[s], want[s], check_exact=True)
    # Today, the forward split divides every earlier price by 4 (volume x 4).
    data_engine._market = engine
    now = data_engine.get_price_history(FWD, 300)
    assert now is not None
    raw = data_engine.get_price_history(FWD, 300, adjust="none")
    assert raw is not None
    before = now.index < pd.Timestamp(2026, 6, 1)
    np.testing.assert_array_equal(now["Close"][before], raw["Close"][before] / 4.0)
    np.testing.assert_array_equal(now["Volume"][before], raw["Volume"][before] * 4.0)
    np.testing.assert_array_equal(now["Close"][~before], raw["Close"][~before])


def test_bad_adjust_names_the_field_and_the_valid_modes(engine: MarketData) -> None:
    with pytest.raises(ConfigError, match="adjust: unknown adjustment 'x'; valid: split, "
                                          "total, none") as e:
        data_engine.get_price_history_batch([FWD], 10, adjust="x")
    assert e.value.field == "adjust"
    with pytest.raises(ConfigError, match="adjust"):
        engine.panel(LAST, 10, adjust="Split")


def _same(a: Panel, b: Panel) -> None:
    np.testing.assert_array_equal(a.sids, b.sids)
    np.testing.assert_array_equal(a.day, b.day)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.as_of == b.as_of and a.adjust == b.adjust


@pytest.mark.parametrize("mode", ["split", "total", "none"])
def test_panel_at_equals_the_panel_as_of_that_day(stores: dict[str, MarketData],
                                                  mode: str) -> None:
    md = stores["full"]
    wide = md.panel(LAST, 390, adjust=mode)
    if mode != "none":
        assert wide.raw is not None and len(wide.raw.rows) < len(wide.sids) / 4
    for day in (D, BETWEEN, dt.date(2026, 5, 4)):
        _same(wide.at(day, 120), md.panel(day, 120, adjust=mode))
        # and from a panel itself cut to an intermediate day, and of a few rows
        _same(wide.at(BETWEEN, 200).at(day, 120) if day <= BETWEEN else wide.at(day, 120),
              md.panel(day, 120, adjust=mode))
        rows = np.array([2, 1, 0])
        _same(md.symbols_panel(rows, day, 120, adjust=mode), md.panel(day, 120, adjust=mode)
              .rows(rows))


def test_scan_history_equals_a_scan_per_date_across_the_splits(
        stores: dict[str, MarketData]) -> None:
    md = stores["full"]
    days = [D, BETWEEN, LAST]
    cfg = ScanConfig(where="close > sma(close, 20)", columns={"Gap": "open / close[1] - 1"})
    hist = scan_history(cfg, days, data=md)
    for day in days:
        got = hist[hist["AsOf"] == pd.Timestamp(day)].drop(columns="AsOf")
        want = scan(cfg.model_copy(update={"as_of_date": day}), md).frame
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False,
                                      check_exact=True)


def test_an_old_split_before_the_window_changes_nothing(tmp_path: Path) -> None:
    market = PitMarket(n=12, splits={"S003": [(dt.date(2025, 1, 15), 2.0)]})
    raw = build(tmp_path / "raw", market, LAST)
    old = build(tmp_path / "old", market, LAST, adjusted=True)
    try:
        a, b = scan(ScanConfig(), raw), scan(ScanConfig(), old)
        pd.testing.assert_frame_equal(a.frame, b.frame, check_exact=True)
        p = raw.panel(LAST, 300)
        assert p.raw is None  # nothing in the window: no row adjusted, nothing copied
    finally:
        raw.close()
        old.close()


# -- cache keys: the adjustment basis ------------------------------------------------------------

def test_a_panel_adjusted_as_of_one_date_is_never_served_for_another(
        stores: dict[str, MarketData]) -> None:
    md = stores["full"]
    md.clear_memory()
    md.clear_panel_files()
    row = list(md.reference()["Symbol"]).index(FWD)
    today = md.panel(LAST, 200)
    then = md.panel(D, 120)  # memory holds today's panel: not this one
    _same(then, stores["then"].panel(D, 120))
    at_d = today.day[row] <= np.datetime64(D, "D").astype(np.int64)
    assert (then.close[row] == 4.0 * today.close[row][at_d][-120:]).all()
    # A new process: the panel files hold one basis, and serve only it.
    for want_day, mode in ((LAST, "split"), (D, "split"), (LAST, "total"), (LAST, "split")):
        fresh = MarketData(settings=md.settings, provider=md.provider, store=md.store)
        got = fresh.panel(want_day, 120, adjust=mode)
        md.clear_memory()
        _same(got, md._load_panel(want_day, 120).adjusted(md.actions(), mode))
    md.clear_memory()
    split, total = md.panel(LAST, 120), md.panel(LAST, 120, adjust="total")
    payer = list(md.reference()["Symbol"]).index(PAYER)
    assert (total.close[payer][:10] < split.close[payer][:10]).all()  # dividends paid later
    _same(md.panel(LAST, 120), split)
    # The adjusted panel is what memory holds: a warm request re-adjusts nothing.
    warm = md.panel(LAST, 120)
    assert warm.close is split.close and warm.raw is split.raw and split.raw is not None


def test_the_shared_panel_key_names_the_basis(tmp_path: Path) -> None:
    md = build(tmp_path / "a", MARKET, LAST)
    try:
        keys = {md._fingerprint(D, "split"), md._fingerprint(D, "total"),
                md._fingerprint(LAST, "split")}
        assert len(keys) == 3
        before = md._fingerprint(D)
        md.store.upsert_actions(pd.DataFrame({"Symbol": ["S005"], "ExDate": [LAST],
                                              "Type": ["split"], "Ratio": [2.0],
                                              "Amount": [np.nan]}))
        assert md._fingerprint(D) == before  # an action after D: the view as of D is the same
        md.store.upsert_actions(pd.DataFrame({"Symbol": ["S005"], "ExDate": [D],
                                              "Type": ["split"], "Ratio": [2.0],
                                              "Amount": [np.nan]}))
        assert md._fingerprint(D) != before
    finally:
        md.close()


def test_instances_share_panels_through_redis_each_adjusting_them(
        tmp_path: Path, redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    a = build(tmp_path / "a", MARKET, LAST, redis_url=url)
    b = build(tmp_path / "b", MARKET, LAST, redis_url=url)
    try:
        pa_, pa_d = a.panel(LAST, 150), a.panel(D, 150, adjust="total")
        with b.request() as c:
            pb, pb_d = b.panel(LAST, 150), b.panel(D, 150, adjust="total")
        assert c.served["redis"] > 0 and c.served["store"] == 0
        _same(pa_, pb)
        _same(pa_d, pb_d)
        assert pb.raw is not None
        _same(pb.at(D, 80), a.panel(D, 80))
    finally:
        a.close()
        b.close()


# -- universe at D: delisted listings stay ------------------------------------------------------

DOOMED = [f"S{i:03d}" for i in range(16, 24)]
CRASH = dt.date(2026, 5, 4)
SURVIVOR_MARKET = PitMarket(
    n=24, seed=5,
    # Strong names: 8 of them run up into D, then crash to nothing and are delisted bankrupt.
    drift={**{f"S{i:03d}": 0.003 for i in range(6)}, **dict.fromkeys(DOOMED, 0.004)},
    crash_from=dict.fromkeys(DOOMED, CRASH),
    delist={s: (dt.date(2026, 6, 1) + dt.timedelta(days=7 * k), "bankrupt")
            for k, s in enumerate(DOOMED)},
)
SCREEN = ScanConfig(where="Return63D > 0.15", min_market_cap=0)


def _forward_returns(md: MarketData, symbols: list[str]) -> pd.Series:
    """From D's close to the last traded close through LAST (a delisted name's exit)."""
    data_engine._market = md
    try:
        hist = data_engine.get_price_history_batch(symbols, 396)
    finally:
        data_engine._market = None
    out = {}
    for s in symbols:
        h = hist[s]["Close"]
        out[s] = h.iloc[-1] / h[h.index <= pd.Timestamp(D)].iloc[-1] - 1
    return pd.Series(out)


def test_survivorship_bias_shown_then_removed(tmp_path: Path) -> None:
    full = build(tmp_path / "full", SURVIVOR_MARKET, LAST)
    survivors = build(tmp_path / "survivors", SURVIVOR_MARKET, LAST, survivors_only=True)
    then = build(tmp_path / "then", SURVIVOR_MARKET, D)
    try:
        pit = scan(SCREEN.model_copy(update={"as_of_date": D}), full).frame
        biased = scan(SCREEN.model_copy(update={"as_of_date": D}), survivors).frame
        truth = scan(SCREEN, then).frame
        # Removed: the point-in-time universe is the one of D (the doomed names included).
        pd.testing.assert_frame_equal(pit, truth, check_exact=True)
        assert set(DOOMED) <= set(pit["Symbol"])
        assert not set(DOOMED) & set(biased["Symbol"])
        fwd_pit = _forward_returns(full, list(pit["Symbol"]))
        fwd_biased = _forward_returns(survivors, list(biased["Symbol"]))
        # Shown: the survivors-only screen's forward return is far better than the real one.
        assert fwd_biased.mean() > fwd_pit.mean() + 0.2
        assert (fwd_pit[DOOMED] < -0.4).all()  # bankrupt: exit at the last traded price
    finally:
        for md in (full, survivors, then):
            md.close()


def test_a_delisted_listing_trades_through_its_last_session_then_leaves(tmp_path: Path
                                                                        ) -> None:
    md = build(tmp_path / "full", SURVIVOR_MARKET, LAST)
    sym = DOOMED[0]
    last_day = SURVIVOR_MARKET.delist[sym][0]
    cfg = ScanConfig(symbols=[sym], min_price=0, min_dollar_volume=0, min_market_cap=0)
    try:
        on = scan(cfg.model_copy(update={"as_of_date": last_day}), md)
        assert list(on.frame["Symbol"]) == [sym]  # not stale on a day it traded
        nxt = md.sessions(LAST)
        after = nxt[nxt > np.datetime64(last_day, "D")][0].astype(dt.date)
        gone = scan(cfg.model_copy(update={"as_of_date": after}), md)
        assert gone.frame.empty
        drops = {k: v for st in gone.stats["stages"] for k, v in st["dropped"].items()}
        assert drops["delisted before as-of"] == 1
        assert not any(k.startswith("stale") for k in drops)
    finally:
        md.close()
