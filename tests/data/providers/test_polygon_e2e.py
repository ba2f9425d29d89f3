"""End to end: MarketData fed by PolygonProvider from the loopback vendor fills a store and
scans, with the same bars (and the same scan) as the synthetic market it serves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from polygon_setup import P_EPOCH

from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings
from technic_v4.data.bars import validate
from technic_v4.data.calendar import sessions_between
from technic_v4.data.market import MarketData
from technic_v4.data.providers.polygon import PolygonProvider
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.pipeline import scan
from technic_v4.testing import END
from technic_v4.vendor_server import Fault, VendorServer

SQL = ("SELECT s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume FROM bars b "
       "JOIN symbols s USING (sid) ORDER BY b.date, s.symbol")


def market(path: Path, provider: object) -> MarketData:
    return MarketData(settings=Settings(data_dir=path, progress=False),
                      provider=provider)  # type: ignore[arg-type]


def test_polygon_fills_the_store_and_scans_like_the_synthetic_market(
        synth: SyntheticProvider, vendor: Callable[..., VendorServer],
        polygon: Callable[..., PolygonProvider], tmp_path: Path) -> None:
    sessions = [d.astype(dt.date) for d in sessions_between(P_EPOCH, END)]
    srv = vendor(page_size=25, faults=[Fault("grouped_daily", "rate_limit", key=str(sessions[3]),
                                             retry_after=0),
                                       Fault("grouped_daily", "server_error",
                                             key=str(sessions[9]))])
    prov = polygon(srv)
    md = market(tmp_path / "polygon", prov)
    ref_md = market(tmp_path / "synthetic", synth)
    try:
        rep = md.ensure_current()
        assert rep.sessions_fetched == sessions and rep.failed == {}
        ref = synth.reference()
        n_ref = len(ref)
        n_gone = int(ref["Delisted"].notna().sum()) if "Delisted" in ref else 0
        got = prov.request_counts
        assert {k: got[k] for k in ("grouped_daily", "tickers", "delisted_tickers",
                                    "ticker_details", "aggs_ticker")} == {
            "grouped_daily": len(sessions) + 2, "tickers": -(-(n_ref - n_gone) // 25),
            "delisted_tickers": max(1, -(-n_gone // 25)), "ticker_details": n_ref,
            "aggs_ticker": 0}
        # Actions: as many pages as the planner's checks need; client and vendor agree.
        assert {k: v for k, v in got.items() if v} == srv.counts
        # The stored bars are the synthetic market's validated bars, row for row.
        kept, vr = validate(synth.bars_for_sessions(sessions))
        want = kept.to_frame().sort_values(["date", "symbol"]).reset_index(drop=True)
        got = md.store.fetch_df(SQL)
        assert len(got) == len(want) > 0
        assert got["symbol"].tolist() == want["symbol"].tolist()
        np.testing.assert_array_equal(got["date"].to_numpy().astype("datetime64[D]"),
                                      want["date"].to_numpy())
        for f in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(got[f].to_numpy(), want[f].to_numpy(), err_msg=f)
        assert rep.validation.dropped["duplicate"] == vr.dropped["duplicate"]
        assert rep.validation.rows_kept == vr.rows_kept

        # A second update costs nothing: the store is current and reference data is cached.
        before = prov.request_counts
        assert md.ensure_current().sessions_fetched == []
        assert prov.request_counts == before

        cfg = ScanConfig(min_history=20, lookback_days=30)
        res = scan(cfg, md)
        assert len(res.frame) > 0
        assert res.stats["counters"]["api_calls"] == {}
        ref_res = scan(cfg, ref_md)
        cols = [c for c in res.frame.columns if c != "Industry"]  # SIC cannot say every industry
        pd.testing.assert_frame_equal(res.frame[cols], ref_res.frame[cols], check_dtype=False)
    finally:
        md.store.close()
        ref_md.store.close()


def test_a_split_after_the_store_was_filled_is_one_action_not_a_refetch(
        synth: SyntheticProvider, vendor: Callable[..., VendorServer],
        polygon: Callable[..., PolygonProvider], tmp_path: Path) -> None:
    sessions = [d.astype(dt.date) for d in sessions_between(P_EPOCH, END)]
    srv = vendor(splits=[("SPY", sessions[-3], 1, 2), ("ZZZZ9", sessions[-3], 1, 3)])
    prov = polygon(srv)
    md = market(tmp_path / "polygon", prov)
    try:
        prov.end = sessions[-6]  # "today" for the first fill
        md.ensure_current()
        before = prov.request_counts
        prov.end = END  # five sessions later SPY has split: one action row, no re-fetch
        md.ensure_current()
        after = prov.request_counts
        delta = {k: after[k] - before[k] for k in after}
        assert delta["grouped_daily"] == 5 and delta["aggs_ticker"] == 0
        assert delta["tickers"] == delta["ticker_details"] == 0  # reference cached for a day
        assert delta["splits"] >= 1  # the split check since the last one
        acts = md.store.actions()
        spy = acts[(acts["Symbol"] == "SPY") & (acts["Type"] == "split")]
        assert spy["ExDate"].tolist() == [pd.Timestamp(sessions[-3])]
        assert spy["Ratio"].tolist() == [2.0]
        assert "ZZZZ9" not in set(acts["Symbol"])  # not a stored listing: dropped, counted
        kept, _ = validate(synth.bars_for_sessions(sessions))
        want = kept.to_frame().sort_values(["date", "symbol"]).reset_index(drop=True)
        got = md.store.fetch_df(SQL)
        assert got["symbol"].tolist() == want["symbol"].tolist()
        np.testing.assert_array_equal(got["close"].to_numpy(), want["close"].to_numpy())
    finally:
        md.store.close()
