"""A vendor's bad rows never crash a scan, never reach the store, and are counted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.testing import END, FaultyProvider, make_market

EPOCH = dt.date(2025, 6, 2)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[MarketData, dict[str, str]]:
    clean = FaultyProvider({}, n_listings=120, seed=3, epoch=EPOCH, end=END)
    ref = clean.reference()
    stocks = ref.loc[ref["Type"] == "Common Stock"].sort_values(
        "SharesOutstanding", ascending=False)["Symbol"].tolist()
    victims = dict(zip(FaultyProvider.FAULTS, stocks[:7], strict=True))
    last5 = [d.astype(dt.date) for d in clean.sessions[-5:]]
    prov = FaultyProvider({k: [v] for k, v in victims.items()}, sessions=last5, n_listings=120,
                          seed=3, epoch=EPOCH, end=END)
    md = make_market(tmp_path_factory.mktemp("faulty"), n=120, epoch=EPOCH, seed=3, provider=prov)
    md.ensure_current()
    return md, victims


def test_each_fault_is_counted_once_per_row(faulty: tuple[MarketData, dict[str, str]]) -> None:
    md, _ = faulty
    rep = md.last_update
    assert rep is not None
    d = rep.validation.dropped
    assert d["non_finite"] >= 5  # nan_close x 5 sessions (+ the market's own broken rows)
    assert d["non_positive_price"] >= 10  # zero_close and negative_open
    assert d["inconsistent_range"] >= 5
    assert d["duplicate"] == 5
    assert rep.validation.zero_volume_rows >= 5
    assert rep.validation.rows_in == rep.validation.rows_kept + rep.validation.rows_dropped


def test_bad_rows_never_reach_the_store(faulty: tuple[MarketData, dict[str, str]]) -> None:
    md, victims = faulty
    store = md.store
    bad = store.fetchall(
        "SELECT count(*) FROM bars WHERE NOT (isfinite(open) AND isfinite(close) AND "
        "isfinite(high) AND isfinite(low)) OR open <= 0 OR close <= 0 OR low <= 0 OR high < low "
        "OR close > high OR close < low OR open > high OR open < low")[0]
    assert bad == (0,)
    dups = store.fetchall("SELECT count(*) FROM (SELECT sid, date FROM bars GROUP BY sid, date "
                       "HAVING count(*) > 1)")[0]
    assert dups == (0,)
    # The duplicate's last copy (close x 1.01) won.
    sid = store.fetchall("SELECT sid FROM symbols WHERE symbol = ?", [victims["duplicate"]]
                      )[0]
    assert sid is not None
    clean = FaultyProvider({}, n_listings=120, seed=3, epoch=EPOCH, end=END)
    want = clean.bars_for_sessions([END])
    i = np.flatnonzero(want.symbol == victims["duplicate"])[0]
    got = store.fetchall("SELECT close FROM bars WHERE sid = ? AND date = ?", [sid[0], END]
                      )[0]
    assert got is not None and got[0] == pytest.approx(want.close[i] * 1.01)


def test_scan_survives_and_explains(faulty: tuple[MarketData, dict[str, str]]) -> None:
    md, victims = faulty
    res = scan(ScanConfig(min_price=0, min_dollar_volume=0, min_market_cap=0, min_history=100,
                          max_stale_sessions=0), md)
    pre = next(s for s in res.stats["stages"] if s["stage"] == "pre_screen")
    # Names whose latest bars were dropped are stale at as-of: excluded, with the reason.
    stale = sum(v for k, v in pre["dropped"].items() if k.startswith("stale"))
    assert stale >= 5
    in_table = set(res.frame["Symbol"])
    for fault in ("nan_close", "zero_close", "negative_open", "high_below_low", "missing"):
        assert victims[fault] not in in_table, fault
    assert victims["zero_volume"] in in_table  # a real no-trade day is data, not an error
    assert victims["duplicate"] in in_table
    assert res.frame["TechRating"].notna().all()


def test_missing_sessions_are_fetched_again(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=60, epoch=EPOCH, end=dt.date(2026, 1, 5))
    md.ensure_current()
    before = set(md.store.stored_sessions().tolist())
    with md.store._transaction() as con:
        con.execute("DELETE FROM sessions WHERE date = DATE '2025-12-01'")
        con.execute("DELETE FROM bars WHERE date = DATE '2025-12-01'")
    rep = md.ensure_current()
    assert [str(d) for d in rep.sessions_fetched] == ["2025-12-01"]
    assert set(md.store.stored_sessions().tolist()) == before
    md.store.close()


def test_failed_sessions_leave_the_store_unchanged_and_are_reported(tmp_path: Path) -> None:
    end = dt.date(2026, 11, 20)
    first = make_market(tmp_path, n=60, epoch=EPOCH, end=dt.date(2026, 11, 13))
    first.ensure_current()
    before = first.store.status()
    first.store.close()
    down = [dt.date(2026, 11, 18), dt.date(2026, 11, 19)]
    prov = FaultyProvider({}, fail_sessions=down, n_listings=60, seed=7, epoch=EPOCH, end=end)
    md = make_market(tmp_path, n=60, epoch=EPOCH, end=end, provider=prov)
    res = scan(ScanConfig(min_history=30, lookback_days=60), md)
    upd = res.stats["update"]
    assert set(upd["failed_sessions"]) == {str(d) for d in down}
    stored = {str(d) for d in md.store.stored_sessions()}
    assert not stored & {str(d) for d in down}
    assert {"2026-11-16", "2026-11-17", "2026-11-20"} <= stored
    assert "2 session(s) could not be fetched (2026-11-18..2026-11-19" in res.message
    assert len(res.frame) > 0 and before["sessions"] < md.store.status()["sessions"]
    # The vendor recovers: the next update fetches exactly what is missing.
    prov.fail_sessions.clear()
    rep = md.ensure_current()
    assert rep.sessions_fetched == down
    md.store.close()


def test_a_session_answered_empty_stays_missing(tmp_path: Path) -> None:
    end = dt.date(2026, 11, 20)
    prov = FaultyProvider({}, empty_sessions=[end], n_listings=60, seed=7, epoch=EPOCH, end=end)
    md = make_market(tmp_path, n=60, epoch=EPOCH, end=end, provider=prov)
    rep = md.ensure_current()
    assert rep.failed == {str(end): "the vendor returned no rows for this session"}
    assert md.store.last_session() == dt.date(2026, 11, 19)
    prov.empty_sessions.clear()
    assert md.ensure_current().sessions_fetched == [end]
    md.store.close()


def test_unknown_market_cap_is_not_screened_but_said(tmp_path: Path) -> None:
    end = dt.date(2026, 11, 20)
    clean = FaultyProvider({}, n_listings=60, seed=7, epoch=EPOCH, end=end)
    ref = clean.reference()
    syms = ref.loc[ref["Type"] == "Common Stock", "Symbol"].head(5).tolist()
    prov = FaultyProvider({}, no_shares=syms, n_listings=60, seed=7, epoch=EPOCH, end=end)
    md = make_market(tmp_path, n=60, epoch=EPOCH, end=end, provider=prov)
    res = scan(ScanConfig(min_history=30, lookback_days=60, min_price=0, min_dollar_volume=0),
               md)
    got = res.frame[res.frame["Symbol"].isin(syms)]
    assert len(got) == 5 and got["MarketCap"].isna().all()
    assert "5 listings have no shares outstanding: market cap not screened" in res.message
    md.store.close()
