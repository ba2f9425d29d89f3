"""The screen stage end to end on the small market: a screen's rows are a plain scan's rows
filtered by the same condition; Matched / Failed / near_miss; sort_by; user columns; history
bounds; point in time. And the stage functions one at a time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import ConfigError
from technic_v4.pipeline import COLUMNS, scan
from technic_v4.terms.presets import preset
from technic_v4.testing import make_market

WHERE = 'close > sma(close, 50) and RSI14 < 60 and sector != "Energy"'
CLAUSES = ("close > sma(close, 50)", "RSI14 < 60", 'sector != "Energy"')


def _plain(md: MarketData, **kw: object) -> pd.DataFrame:
    return scan(ScanConfig(**kw), md).frame  # type: ignore[arg-type]


def _held(frame: pd.DataFrame) -> np.ndarray:
    """The three clauses of WHERE, computed from a plain scan's output columns."""
    return np.column_stack([(frame["Close"] > frame["SMA50"]).to_numpy(),
                            (frame["RSI14"] < 60).to_numpy(),
                            (frame["Sector"] != "Energy").to_numpy()])


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal rows apart from Rank (renumbered) and the screen's own columns."""
    drop = ["Rank", "Matched"]
    pd.testing.assert_frame_equal(got[list(COLUMNS)].drop(columns=drop).reset_index(drop=True),
                                  want.drop(columns=drop).reset_index(drop=True))


def test_a_screen_is_a_plain_scan_filtered_by_the_same_condition(
        small_market: MarketData) -> None:
    plain = _plain(small_market)
    assert (plain["Matched"] == "").all()  # no where: Matched is empty
    held = _held(plain)
    res = scan(ScanConfig(where=WHERE), small_market)
    want = plain[held.all(axis=1)]
    assert 0 < len(want) < len(plain)
    _same_rows(res.frame, want)
    assert list(res.frame.columns) == list(COLUMNS)  # no Failed without near_miss
    assert (res.frame["Matched"] == "; ".join(CLAUSES)).all()
    assert res.frame["Rank"].tolist() == list(range(1, len(want) + 1))
    # Each dropped row counts once, under its first failing clause.
    st = {s["stage"]: s for s in res.stats["stages"]}["screen"]
    first = np.argmin(held, axis=1)[~held.all(axis=1)]
    assert st["dropped"] == {f"where: {CLAUSES[j]}": int((first == j).sum())
                             for j in sorted(set(first))}
    assert st["in"] == len(plain) and st["out"] == len(want)


def test_near_miss_keeps_rows_failing_at_most_k_clauses_and_names_them(
        small_market: MarketData) -> None:
    plain = _plain(small_market)
    held = _held(plain)
    res = scan(ScanConfig(where=WHERE, near_miss=1), small_market).frame
    keep = (~held).sum(axis=1) <= 1
    _same_rows(res, plain[keep])
    assert list(res.columns) == [*COLUMNS, "Failed"]
    for row, h in zip(res.itertuples(), held[keep], strict=True):
        assert row.Matched == "; ".join(c for c, ok in zip(CLAUSES, h, strict=True) if ok)
        assert row.Failed == "; ".join(c for c, ok in zip(CLAUSES, h, strict=True) if not ok)
    assert (res["Failed"] != "").any() and (res["Failed"] == "").any()


def test_sort_by_replaces_techrating_ties_by_symbol(small_market: MarketData) -> None:
    plain = _plain(small_market)
    res = scan(ScanConfig(sort_by="RSI14", top_n=40), small_market).frame
    want = plain.assign(_neg=-plain["RSI14"]).sort_values(["_neg", "Symbol"]).head(40)
    _same_rows(res, want.drop(columns="_neg"))
    # An integer key has ties: Symbol breaks them.
    res = scan(ScanConfig(sort_by="round_key", columns={"round_key": "RSRating"}),
               small_market).frame
    key = list(zip((-res["round_key"]).tolist(), res["Symbol"].tolist(), strict=True))
    assert key == sorted(key)
    assert res["round_key"].duplicated().any()


def test_user_columns_follow_the_built_in_ones_in_order(small_market: MarketData) -> None:
    cols = {"Dist50": "close / sma(close, 50) - 1", "Up": "close > open", "Where": "sector",
            "Prev": "close[1]"}
    res = scan(ScanConfig(columns=cols, sort_by="Dist50", top_n=50), small_market).frame
    assert list(res.columns) == [*COLUMNS, *cols]
    np.testing.assert_allclose(res["Dist50"], res["Close"] / res["SMA50"] - 1, rtol=1e-12)
    assert res["Up"].dtype == bool
    assert (res["Where"] == res["Sector"]).all()
    assert (res["Dist50"].diff().dropna() <= 0).all()
    # close[1]: the previous bar, as the plain panel has it
    panel = small_market.panel(dt.date(2026, 11, 20), 2)
    prev = dict(zip(panel.symbols, panel.close[:, 0], strict=True))
    assert res["Prev"].tolist() == [prev[s] for s in res["Symbol"]]


def test_preset_and_where_combine_by_and(small_market: MarketData) -> None:
    p = preset("rsi2_pullback")
    both = scan(ScanConfig(preset="rsi2_pullback", where="RSRating >= 50", near_miss=9),
                small_market).frame
    clauses = ScanConfig(preset="rsi2_pullback").screen().where
    assert clauses is not None
    texts = [" ".join(c.text.split()) for c in clauses.clauses]
    matched = "; ".join([*texts, "RSRating >= 50"])
    ok = both[both["Failed"] == ""]
    assert (ok["Matched"] == matched).all()
    assert (both["Failed"].str.contains("RSRating >= 50") == (both["RSRating"] < 50)).all()
    assert p.expression  # the preset's text is what was combined


def test_more_history_than_stored_names_the_term(small_market: MarketData) -> None:
    bound = small_market.max_bars()
    with pytest.raises(ConfigError, match=rf"`sma\(close,{bound + 1}\)` needs {bound + 1} "
                       "sessions") as e:
        scan(ScanConfig(where=f"close > 1 and close > sma(close, {bound + 1})"), small_market)
    assert e.value.field == "where"
    with pytest.raises(ConfigError) as e:
        scan(ScanConfig(columns={"Far": f"close[{bound}]"}), small_market)
    assert e.value.field == "columns.Far"
    # As of an earlier session fewer are stored: the bound moves with it.
    early = dt.date(2025, 6, 2)
    n = len(small_market.sessions(early))
    with pytest.raises(ConfigError, match=f"the store holds {n} up to {early}"):
        scan(ScanConfig(where=f"close > sma(close, {n + 1})", as_of_date=early, min_history=30,
                        lookback_days=30), small_market)


def test_screen_bars_beyond_lookback_leave_built_in_columns_alone(
        small_market: MarketData) -> None:
    """A where needing 400 sessions loads 400; the built-in columns still use lookback_days."""
    plain = _plain(small_market)
    res = scan(ScanConfig(where="sma(close, 400) > 0"), small_market)
    got = res.frame
    assert 0 < len(got) < len(plain)  # younger listings have no sma(close,400)
    _same_rows(got, plain[plain["Symbol"].isin(got["Symbol"])])


def test_point_in_time_a_screen_as_of_d_equals_the_screen_on_a_store_ending_at_d(
        small_market: MarketData, tmp_path: Path) -> None:
    as_of = dt.date(2026, 9, 15)
    cfg = {"where": "close > sma(close, 320) and rank(change(close, 21)) >= 40",
           "columns": {"Wk": "weekly(close > sma(close, 10))", "R": "rank(volume)"},
           "near_miss": 1, "top_n": 60}
    past = scan(ScanConfig(as_of_date=as_of, **cfg), small_market)  # type: ignore[arg-type]
    then = make_market(tmp_path, end=as_of)
    then.ensure_current()
    try:
        fresh = scan(ScanConfig(**cfg), then)  # type: ignore[arg-type]
    finally:
        then.store.close()
    assert len(past.frame) > 0
    pd.testing.assert_frame_equal(past.frame, fresh.frame)


def test_max_symbols_zero_returns_the_screens_columns(small_market: MarketData) -> None:
    res = scan(ScanConfig(max_symbols=0, where="close > 1", near_miss=1,
                          columns={"Up": "close > open"}), small_market)
    assert list(res.frame.columns) == [*COLUMNS, "Failed", "Up"]
    assert len(res.frame) == 0


# --- the stage functions, one at a time ------------------------------------------------------
def _tiny() -> tuple[Panel, pd.DataFrame]:
    close = np.array([[10.0, 11, 12], [10, 9, 8], [np.nan, 5, 20]])
    day = np.where(np.isnan(close), -1, np.arange(20_000, 20_003)[None, :]).astype(np.int32)
    panel = Panel(symbols=np.array(["AAA", "BBB", "CCC"], dtype=object),
                  sids=np.arange(3, dtype=np.int32), open=close - 0.5, high=close + 1,
                  low=close - 1, close=close, volume=np.full((3, 3), 1e6), day=day,
                  as_of=dt.date(2024, 10, 4))
    ref = pd.DataFrame({"Symbol": panel.symbols, "Name": ["A", "B", "C"],
                        "Sector": ["Energy", "Financials", "Energy"],
                        "Industry": ["Oil, Gas & Consumable Fuels", "Banks",
                                     "Oil, Gas & Consumable Fuels"],
                        "Type": "Common Stock", "Exchange": "XNYS",
                        "SharesOutstanding": [1e6, 2e6, np.nan]})
    return panel, ref


def test_screen_stage_alone() -> None:
    panel, ref = _tiny()
    builtin = {"RSRating": np.array([90.0, 50.0, 70.0])}
    cfg = ScanConfig(where='close > close[1] and sector == "Energy" and RSRating > 60',
                     near_miss=1, columns={"Chg": "change(close, 1)"}, sort_by="Chg")
    st, out = pipeline.screen(cfg, panel, ref, builtin)
    assert out.keep.tolist() == [True, False, True]
    assert out.matched.tolist() == ['close > close[1]; sector == "Energy"; RSRating > 60',
                                    "",
                                    'close > close[1]; sector == "Energy"; RSRating > 60']
    assert out.failed is not None
    assert out.failed.tolist()[1] == 'close > close[1]; sector == "Energy"; RSRating > 60'
    assert st.dropped == {"where: close > close[1]": 1}
    np.testing.assert_allclose(out.columns["Chg"], [100 * (12 / 11 - 1), 100 * (8 / 9 - 1),
                                                    300.0])
    assert out.sort_key is not None and out.sort_key.tolist() == out.columns["Chg"].tolist()


def test_universe_and_smart_filter_stages_alone() -> None:
    _, ref = _tiny()
    ref = ref.assign(ListDate=["2020-01-01", "2024-10-05", None])
    st, alive = pipeline.universe(ref, dt.date(2024, 10, 4))
    assert alive.tolist() == [True, False, True]
    assert st.dropped == {"listed after as-of": 1}
    notes: list[str] = []
    st, alive = pipeline.smart_filter(ScanConfig(sectors=["Financials"]), ref, alive, notes)
    assert alive.tolist() == [False, False, False]
    assert st.dropped == {"sector not selected": 2}


def test_history_scans_apply_the_screen_at_each_date(small_market: MarketData) -> None:
    from technic_v4.history import scan_history

    cfg = ScanConfig(where="close > sma(close, 350)", columns={"Hi": "highest(high, 5)"},
                     top_n=20)
    dates = [dt.date(2026, 10, 1), dt.date(2026, 11, 20)]
    hist = scan_history(cfg, dates, data=small_market)
    for day in dates:
        one = scan(cfg.model_copy(update={"as_of_date": day}), small_market).frame
        got = hist[hist["AsOf"] == pd.Timestamp(day)].drop(columns="AsOf")
        assert len(one) > 0
        pd.testing.assert_frame_equal(got.reset_index(drop=True), one, check_dtype=False)


def test_a_longer_screen_panel_computes_builtin_terms_on_its_own_bars(
        small_market: MarketData) -> None:
    """A column needing 400 sessions loads 400 bars for the screen: `adx(14)` is then TA-Lib's
    ADX on those 400 bars (the built-in ADX14, computed on lookback_days bars, is not reused)."""
    import talib

    from technic_v4 import data_engine

    res = scan(ScanConfig(columns={"adx": "adx(14)", "s400": "sma(close, 400)"}, max_symbols=20),
               small_market)
    frame = res.frame.dropna(subset=["s400"])
    assert len(frame) > 0
    data_engine.set_market(small_market)
    try:
        hist = data_engine.get_price_history_batch(frame["Symbol"].tolist(), 400)
    finally:
        data_engine._market = None
    for sym, got in zip(frame["Symbol"], frame["adx"], strict=True):
        h = hist[sym]
        want = talib.ADX(h["High"].to_numpy(), h["Low"].to_numpy(), h["Close"].to_numpy(), 14)[-1]
        assert got == pytest.approx(want, rel=1e-9)


def test_malformed_columns_are_refused() -> None:
    with pytest.raises(ConfigError, match="columns: give a mapping"):
        ScanConfig(columns=[["a", "close"], "junk"])  # type: ignore[arg-type]
