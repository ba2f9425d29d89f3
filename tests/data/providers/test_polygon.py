"""PolygonProvider against the real loopback vendor server: parsing, paging, faults, counts,
reference data and its cache, splits, and a key that never leaks."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from polygon_setup import KEY, P_EPOCH

from technic_v4.config.settings import Settings
from technic_v4.data.bars import FIELDS, BarBatch, validate
from technic_v4.data.calendar import latest_completed_session, sessions_between
from technic_v4.data.market import make_provider
from technic_v4.data.providers import sic_gics
from technic_v4.data.providers.base import (
    ACTION_COLUMNS,
    LISTING_STATUS_COLUMNS,
    REFERENCE_COLUMNS,
)
from technic_v4.data.providers.polygon import ENDPOINTS, PolygonProvider, ny_dates, technic_type
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ConfigError, ProviderError, RetryableProviderError
from technic_v4.testing import END
from technic_v4.universe import gics
from technic_v4.vendor_server import Fault, VendorServer

Vendor = Callable[..., VendorServer]
Polygon = Callable[..., PolygonProvider]
SESSIONS = [d.astype(dt.date) for d in sessions_between(P_EPOCH, END)]
DAY = dt.date(2026, 11, 18)


def counts(**nonzero: int) -> dict[str, int]:
    return {e: nonzero.get(e, 0) for e in ENDPOINTS}


def canon(b: BarBatch) -> BarBatch:
    return b.take(np.lexsort((b.close, b.symbol.astype(str), b.date)))


def assert_same_bars(a: BarBatch, b: BarBatch) -> None:
    a, b = canon(a), canon(b)
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.symbol, b.symbol)
    np.testing.assert_array_equal(a.date, b.date)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


# -- bars -------------------------------------------------------------------------------------


def test_grouped_daily_is_the_vendors_day(synth: SyntheticProvider, vendor: Vendor,
                                          polygon: Polygon) -> None:
    srv = vendor()
    p = polygon(srv)
    got = p.bars_for_sessions([DAY])
    assert_same_bars(got, synth.bars_for_sessions([DAY]))
    assert got.date.dtype == np.dtype("datetime64[D]") and (got.date == np.datetime64(DAY)).all()
    assert p.request_counts == counts(grouped_daily=1)
    assert srv.counts == {"grouped_daily": 1}
    assert p.malformed_rows == {} and p.empty_sessions == []


def test_every_session_one_request_each(synth: SyntheticProvider, vendor: Vendor,
                                        polygon: Polygon) -> None:
    p = polygon(vendor())
    got = p.bars_for_sessions(SESSIONS)
    assert_same_bars(got, synth.bars_for_sessions(SESSIONS))
    assert p.request_counts == counts(grouped_daily=len(SESSIONS))


def test_holidays_and_days_without_data_are_empty(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor(holidays=[DAY])
    p = polygon(srv)
    weekend, thanksgiving = dt.date(2026, 11, 21), dt.date(2026, 11, 26)
    got = p.bars_for_sessions([DAY, weekend, thanksgiving])
    assert len(got) == 0
    assert p.empty_sessions == [DAY, weekend, thanksgiving]
    assert p.request_counts == counts(grouped_daily=3)
    assert all(r.status == 200 for r in srv.requests)


def test_bad_rows_pass_through_to_validation(synth: SyntheticProvider, vendor: Vendor,
                                             polygon: Polygon) -> None:
    base = synth.bars_for_sessions([DAY])
    syms = [str(s) for s in base.symbol[:9]]
    srv = vendor(faults=[
        Fault("grouped_daily", "duplicate_rows", key=str(DAY), symbols=tuple(syms[0:3])),
        Fault("grouped_daily", "bad_prices", key=str(DAY), symbols=tuple(syms[3:7])),
        Fault("grouped_daily", "missing_field", key=str(DAY), symbols=tuple(syms[7:9])),
    ])
    p = polygon(srv)
    got = p.bars_for_sessions([DAY])
    # Duplicates and bad prices are returned as sent; rows without a close are dropped here.
    assert len(got) == len(base) + 3 - 2
    assert p.malformed_rows == {"missing_field": 2}
    assert sorted(s for s, n in pd.Series(got.symbol).value_counts().items() if n > 1) == \
        sorted(syms[0:3])
    _, want = validate(base)
    _, rep = validate(got)
    delta = {k: rep.dropped[k] - want.dropped[k] for k in rep.dropped}
    assert delta == {"non_finite": 1, "non_positive_price": 2, "negative_volume": 0,
                     "inconsistent_range": 1, "duplicate": 3}


def test_per_ticker_bars_follow_next_url(synth: SyntheticProvider, vendor: Vendor,
                                         polygon: Polygon) -> None:
    srv = vendor(aggs_page_size=5)
    p = polygon(srv)
    start, end = dt.date(2026, 10, 15), dt.date(2026, 11, 13)
    syms = ["SPY", str(synth.reference()["Symbol"].iloc[5])]
    got = p.bars_for_symbols(syms, start, end)
    full = synth.bars_for_sessions(SESSIONS)
    want = full.take(np.flatnonzero(np.isin(full.symbol, syms) & (full.date >= np.datetime64(start))
                                    & (full.date <= np.datetime64(end))))
    assert_same_bars(got, want)
    pages = sum(math.ceil(int((want.symbol == s).sum()) / 5) for s in syms)
    assert p.request_counts == counts(aggs_ticker=pages)
    assert srv.counts == {"aggs_ticker": pages}
    assert len(p.bars_for_symbols(["NOPE"], start, end)) == 0


def test_bar_dates_are_new_york_dates_of_t() -> None:
    ms = [
        pd.Timestamp("2026-11-20 00:00", tz="America/New_York").value // 10**6,  # 05:00 UTC
        pd.Timestamp("2026-11-20 16:00", tz="America/New_York").value // 10**6,
        pd.Timestamp("2026-11-20 23:30", tz="America/New_York").value // 10**6,  # next day UTC
        pd.Timestamp("2026-07-01 00:00", tz="America/New_York").value // 10**6,  # EDT
        np.nan,
    ]
    got = ny_dates(np.array(ms, dtype=float))
    want = np.array(["2026-11-20"] * 3 + ["2026-07-01", "NaT"], dtype="datetime64[D]")
    np.testing.assert_array_equal(got, want)


def test_grouped_rows_dated_another_day_are_dropped_and_counted(vendor: Vendor,
                                                                polygon: Polygon) -> None:
    p = polygon(vendor())
    t_other = pd.Timestamp("2026-11-17 16:00", tz="America/New_York").value // 10**6
    rows = [{"T": "A", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 5, "t": t_other},
            {"T": "B", "o": 1.0, "h": 1.0, "l": 1.0, "c": None, "v": 5},
            {"T": "C", "o": "x", "h": 1.0, "l": 1.0, "c": 1.0, "v": 5},
            {"o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 5}, 7]
    b = p._parse_bars(rows, "grouped_daily", session=DAY)
    assert b.symbol.tolist() == ["B"] and np.isnan(b.close[0]) and b.date[0] == np.datetime64(DAY)
    assert p.malformed_rows == {"wrong_date": 1, "not_a_number": 1, "missing_field": 1,
                                "not_an_object": 1}


# -- reference data ---------------------------------------------------------------------------


def test_reference_pages_and_maps_back_to_the_synthetic_market(synth: SyntheticProvider,
                                                               vendor: Vendor,
                                                               polygon: Polygon) -> None:
    srv = vendor(page_size=7)
    p = polygon(srv)
    ref = p.reference()
    assert tuple(ref.columns) == REFERENCE_COLUMNS + LISTING_STATUS_COLUMNS
    assert ref["Delisted"].isna().all() and ref["DelistReason"].isna().all()  # none delisted
    want = synth.reference()
    n = len(want)
    assert p.request_counts == counts(tickers=math.ceil(n / 7), delisted_tickers=1,
                                      ticker_details=n)
    got = ref.set_index("Symbol").loc[want["Symbol"]].reset_index()
    for c in ("Symbol", "Name", "Type", "Exchange", "Sector"):
        assert got[c].fillna("-").tolist() == want[c].fillna("-").tolist(), c
    np.testing.assert_array_equal(got["SharesOutstanding"].to_numpy(),
                                  want["SharesOutstanding"].to_numpy())
    assert (pd.to_datetime(got["ListDate"]) == pd.to_datetime(want["ListDate"])).all()
    reachable = sic_gics.reachable_industries()
    for (s, i), gi in zip(want[["Sector", "Industry"]].itertuples(index=False), got["Industry"],
                          strict=True):
        if isinstance(s, str) and i in reachable[s]:
            assert gi == i
        elif isinstance(s, str):
            assert gi in gics.SECTOR_INDUSTRIES[s]
        else:
            assert pd.isna(gi)


def details_asked(srv: VendorServer) -> list[str]:
    """Tickers whose details the server was asked for, in order (then the log is cleared)."""
    out = [r.path.rsplit("/", 1)[-1] for r in srv.requests if r.endpoint == "ticker_details"]
    srv.reset_log()
    return out


def test_reference_is_cached_with_a_ttl(vendor: Vendor, polygon: Polygon,
                                        tmp_path: object) -> None:
    srv = vendor(page_size=20)
    now = [1_000_000.0]
    p = polygon(srv, clock=lambda: now[0])
    first = p.reference()
    cold = p.request_counts
    n = len(first)
    assert cold["tickers"] == math.ceil(n / 20) and cold["ticker_details"] == n
    assert cold["delisted_tickers"] == 1
    again = p.reference()
    assert p.request_counts == cold  # no tickers, no details requests
    pd.testing.assert_frame_equal(first, again)
    # A new process (same cache dir) costs nothing either.
    q = polygon(srv, clock=lambda: now[0])
    pd.testing.assert_frame_equal(q.reference(), first)
    assert q.request_counts == counts()
    # After a day the list is refreshed, and a seventh of the details (not all of them).
    now[0] += 86_400 + 1
    pd.testing.assert_frame_equal(q.reference(), first)
    assert q.request_counts == counts(tickers=cold["tickers"], delisted_tickers=1,
                                      ticker_details=n // 7)


def test_details_are_refreshed_a_slice_a_day_oldest_first(vendor: Vendor,
                                                          polygon: Polygon) -> None:
    srv = vendor()
    now = [5_000_000.0]
    p = polygon(srv, clock=lambda: now[0])
    n = len(p.reference())
    assert sorted(details_asked(srv)) == sorted(p.reference()["Symbol"])
    days: list[list[str]] = []
    for _day in range(7):
        now[0] += 86_400
        p.reference()
        days.append(details_asked(srv))
        assert n // 7 <= len(days[-1]) <= -(-n // 7)  # no cliff: about n/7 every day
    # Within a week every ticker's details were refreshed exactly once ...
    assert sorted(t for d in days for t in d) == sorted(p.reference()["Symbol"])
    # ... and on the eighth day the oldest entries (refreshed first) come round again.
    oldest_first = [t for d in days for t in sorted(d)]
    now[0] += 86_400
    p.reference()
    eighth = details_asked(srv)
    assert n // 7 <= len(eighth) <= -(-n // 7)
    assert sorted(eighth) == sorted(oldest_first[:len(eighth)])
    # Hourly calls add up to the same slice a day, none of them a cliff.
    asked: list[str] = []
    for _ in range(24):
        now[0] += 3_600
        p.reference()
        asked += details_asked(srv)
    assert n // 7 - 1 <= len(asked) <= -(-n // 7) + 1
    # After a month away every entry is older than a week: all are refreshed, once.
    now[0] += 30 * 86_400
    p.reference()
    assert sorted(details_asked(srv)) == sorted(p.reference()["Symbol"])


def test_details_only_for_new_tickers(synth: SyntheticProvider, vendor: Vendor,
                                      polygon: Polygon) -> None:
    srv = vendor()
    now = [0.0]
    p = polygon(srv, clock=lambda: now[0])
    n = len(p.reference())
    srv.add_listing({"ticker": "NEWCO", "name": "Newco Inc.", "type": "CS",
                     "primary_exchange": "XNAS", "sic_code": "7372",
                     "share_class_shares_outstanding": 5e7, "list_date": "2026-11-19"})
    srv.reset_log()
    now[0] += 86_400
    ref = p.reference()
    assert len(ref) == n + 1
    asked = details_asked(srv)  # NEWCO's details at once, and the day's slice of the others
    assert "NEWCO" in asked and len(asked) == 1 + n // 7
    assert p.request_counts == counts(tickers=2, delisted_tickers=2,
                                      ticker_details=n + 1 + n // 7)
    row = ref.set_index("Symbol").loc["NEWCO"]
    assert (row["Type"], row["Sector"], row["Industry"]) == (gics.COMMON_STOCK,
                                                             "Information Technology", "Software")


EXTRA = [
    {"ticker": "WARR.WS", "name": "Blank Co Warrants", "type": "WARRANT", "sic_code": "6770"},
    {"ticker": "UNIT.U", "name": "Foo Acquisition Corp Units", "type": "UNIT"},
    {"ticker": "SPCA", "name": "Foo Acquisition Corp", "type": "CS"},
    {"ticker": "SPCB", "name": "Bar Holdings", "type": "CS", "sic_code": "6770"},
    {"ticker": "SDS", "name": "ProShares UltraShort S&P500", "type": "ETF"},
    {"ticker": "SOXL", "name": "Direxion Daily Semiconductor Bull 3X Shares", "type": "ETF"},
    {"ticker": "SHV", "name": "iShares Short Treasury Bond ETF", "type": "ETF"},
    {"ticker": "FNGD", "name": "MicroSectors FANG+ Index -3X Inverse Leveraged ETN",
     "type": "ETN", "sic_code": "6221"},
    {"ticker": "BP", "name": "BP p.l.c. American Depositary Shares", "type": "ADRC",
     "primary_exchange": "XNYS", "sic_code": "2911"},
    {"ticker": "OFC", "name": "Metro Office Properties Trust", "type": "CS", "sic_code": "6798"},
    {"ticker": "MTG1", "name": "Capstone Mortgage Investment Corp", "type": "CS",
     "sic_code": "6798"},
    {"ticker": "PFDX", "name": "Some Bank 5% Preferred", "type": "PFD", "sic_code": "6021",
     "weighted_shares_outstanding": 4e6},
    {"ticker": "GONE", "name": "Delisted Between Calls Inc.", "type": "CS",
     "_details_404": True},
]


def test_types_sics_and_exchanges_map_to_technic(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor(extra_listings=EXTRA)
    p = polygon(srv)
    ref = p.reference().set_index("Symbol")
    want = {
        "WARR.WS": (None, None, None), "UNIT.U": (None, None, None),
        "SPCA": (gics.SPAC, "Financials", "Financial Services"),
        "SPCB": (gics.SPAC, "Financials", "Financial Services"),
        "SDS": (gics.INVERSE_ETF, None, None), "SOXL": (gics.LEVERAGED_ETF, None, None),
        "SHV": (gics.ETF, None, None), "FNGD": (gics.INVERSE_ETF, None, None),
        "BP": (gics.ADR, "Energy", "Oil, Gas & Consumable Fuels"),
        "OFC": (gics.COMMON_STOCK, "Real Estate", "Office REITs"),
        "MTG1": (gics.COMMON_STOCK, "Financials",
                 "Mortgage Real Estate Investment Trusts (REITs)"),
        "PFDX": (gics.PREFERRED, "Financials", "Banks"),
        "GONE": (gics.COMMON_STOCK, None, None),
    }
    for sym, (typ, sector, industry) in want.items():
        row = ref.loc[sym]
        got = tuple(None if pd.isna(x) else x for x in (row["Type"], row["Sector"],
                                                         row["Industry"]))
        assert got == (typ, sector, industry), sym
    assert ref.loc["BP", "Exchange"] == "NYSE"
    assert ref.loc["PFDX", "SharesOutstanding"] == 4e6
    assert np.isnan(ref.loc["GONE", "SharesOutstanding"])
    assert p.details_missing == ["GONE"]
    # No details requests for listings technic does not scan (warrants, units).
    asked = {r.path.rsplit("/", 1)[-1] for r in srv.requests if r.endpoint == "ticker_details"}
    assert "WARR.WS" not in asked and "UNIT.U" not in asked and "GONE" in asked


@pytest.mark.parametrize(("code", "name", "sic", "want"), [
    ("CS", "Apple Inc.", "3571", gics.COMMON_STOCK),
    ("OS", "Ordinary Shares Ltd", None, gics.COMMON_STOCK),
    ("ADRC", "Toyota Motor Corp ADR", None, gics.ADR),
    ("ADRS", "Some ADR", None, gics.ADR),
    ("ADRP", "Some Preferred ADR", None, gics.PREFERRED),
    ("PFD", "Bank Preferred Series A", None, gics.PREFERRED),
    ("ETF", "SPDR S&P 500 ETF Trust", None, gics.ETF),
    ("ETF", "ProShares Ultra QQQ", None, gics.LEVERAGED_ETF),
    ("ETF", "ProShares UltraPro QQQ", None, gics.LEVERAGED_ETF),
    ("ETF", "ProShares Short QQQ", None, gics.INVERSE_ETF),
    ("ETF", "Direxion Daily Financial Bear 3X Shares", None, gics.INVERSE_ETF),
    ("ETF", "Vanguard Short-Term Bond ETF", None, gics.ETF),
    ("ETF", "JPMorgan Ultra-Short Income ETF", None, gics.ETF),
    ("ETF", "Invesco Ultra Short Duration ETF", None, gics.ETF),
    ("ETF", "T-Rex 2X Long NVIDIA Daily Target ETF", None, gics.LEVERAGED_ETF),
    ("ETV", "iShares Gold Trust", None, gics.ETF),
    ("FUND", "PIMCO Dynamic Income Fund", None, gics.ETF),
    ("CS", "Churchill Capital Acquisition Corp VII", None, gics.SPAC),
    ("CS", "Shell Co", 6770, gics.SPAC),
    ("WARRANT", "Foo Warrants", None, None),
    ("RIGHT", "Foo Rights", None, None),
    ("UNIT", "Foo Acquisition Corp Units", None, None),
    ("SP", "Structured Product", None, None),
    (None, "No type", None, None),
])
def test_type_codes(code: str | None, name: str, sic: object, want: str | None) -> None:
    assert technic_type(code, name, sic) == want


def test_every_gics_sector_is_reachable_through_the_vendor(vendor: Vendor,
                                                           polygon: Polygon) -> None:
    extra = [{"ticker": f"S{i:02d}", "name": f"Sector {i} Inc.", "type": "CS",
              "sic_code": str(sic_gics.representative_sic(s))}
             for i, s in enumerate(gics.SECTORS)]
    p = polygon(vendor(extra_listings=extra))
    ref = p.reference().set_index("Symbol")
    assert [ref.loc[f"S{i:02d}", "Sector"] for i in range(len(gics.SECTORS))] == \
        list(gics.SECTORS)


# -- splits (more in test_polygon_actions.py) -----------------------------------------------


def test_splits_filter_and_page(vendor: Vendor, polygon: Polygon) -> None:
    splits = [("AAA", dt.date(2026, 1, 5), 1, 4), ("BBB", dt.date(2026, 3, 2), 10, 1),
              ("CCC", dt.date(2026, 6, 1), 2, 3), ("DDD", dt.date(2026, 9, 9), 1, 2),
              ("EEE", dt.date(2026, 11, 2), 1, 10),
              ("FFF", dt.date(2026, 12, 7), 1, 2)]  # announced: after the latest session
    srv = vendor(splits=splits, page_size=2)
    p = polygon(srv)
    everything = p.actions(dt.date(2026, 3, 2))
    assert tuple(everything.columns) == ACTION_COLUMNS
    # The served market has actions of its own; these tickers are not among its listings.
    got = everything[everything["Symbol"].isin([s[0] for s in splits])]
    assert got["Symbol"].tolist() == ["BBB", "CCC", "DDD", "EEE"]
    assert got["ExDate"].dt.date.tolist() == [s[1] for s in splits[1:5]]
    assert got["Type"].tolist() == ["split"] * 4
    assert got["Ratio"].tolist() == [0.1, 1.5, 2.0, 10.0]
    assert got["Amount"].isna().all()
    # Paged (two records a page: at least two pages of splits), each page counted as the server
    # counted it.
    assert p.request_counts["splits"] >= 2
    assert {k: v for k, v in p.request_counts.items() if v} == \
        {k: srv.counts[k] for k in ("splits", "dividends")}
    assert len(p.actions(dt.date(2027, 1, 1))) == 0


# -- faults -----------------------------------------------------------------------------------


def test_429_waits_retry_after_then_succeeds(synth: SyntheticProvider, vendor: Vendor,
                                             polygon: Polygon) -> None:
    srv = vendor(faults=[Fault("grouped_daily", "rate_limit", key=str(DAY), retry_after=1)])
    p = polygon(srv)
    t0 = time.monotonic()
    got = p.bars_for_sessions([DAY])
    waited = time.monotonic() - t0
    assert waited >= 1.0  # Retry-After: 1 honoured (backoff alone would be ~0.01 s)
    assert_same_bars(got, synth.bars_for_sessions([DAY]))
    assert p.request_counts == counts(grouped_daily=2)
    assert [r.status for r in srv.requests] == [429, 200]


def test_5xx_resets_and_timeouts_are_retried(synth: SyntheticProvider, vendor: Vendor,
                                             polygon: Polygon) -> None:
    d1, d2, d3 = SESSIONS[-3:]
    srv = vendor(faults=[Fault("grouped_daily", "server_error", key=str(d1), times=2, status=502),
                         Fault("grouped_daily", "reset", key=str(d2)),
                         Fault("grouped_daily", "slow", key=str(d3), delay_s=1.0)])
    p = polygon(srv, timeout_s=0.3)
    got = p.bars_for_sessions([d1, d2, d3])
    assert_same_bars(got, synth.bars_for_sessions([d1, d2, d3]))
    assert p.request_counts == counts(grouped_daily=3 + 2 + 2)


def test_retries_exhausted_raise_retryable(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor(faults=[Fault("grouped_daily", "server_error", times=None)])
    p = polygon(srv, max_retries=2)
    with pytest.raises(RetryableProviderError, match="grouped_daily") as ei:
        p.bars_for_sessions([DAY])
    assert "503" in str(ei.value) and "3 attempts" in str(ei.value)
    assert ei.value.__cause__ is not None
    assert p.request_counts == counts(grouped_daily=3)
    assert srv.counts == {"grouped_daily": 3}


def test_malformed_json_is_a_provider_error(vendor: Vendor, polygon: Polygon) -> None:
    p = polygon(vendor(faults=[Fault("tickers", "malformed_json")]))
    with pytest.raises(ProviderError, match=r"tickers.*malformed JSON") as ei:
        p.reference()
    assert not isinstance(ei.value, RetryableProviderError)
    assert p.request_counts == counts(tickers=1)


def test_other_4xx_name_endpoint_and_status(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor()
    p = polygon(srv, base_url=srv.url + "/wrong-prefix")
    with pytest.raises(ProviderError, match=r"grouped_daily .*HTTP 404") as ei:
        p.bars_for_sessions([DAY])
    assert not isinstance(ei.value, RetryableProviderError)
    assert p.request_counts == counts(grouped_daily=1)


def _chain(e: BaseException | None) -> list[BaseException]:
    out = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def test_wrong_key_is_401_and_the_key_never_leaks(vendor: Vendor, polygon: Polygon,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    srv = vendor(api_key="the-right-key")
    p = polygon(srv, key=KEY)
    with pytest.raises(ProviderError, match="401") as ei:
        p.bars_for_sessions([DAY])
    assert not isinstance(ei.value, RetryableProviderError)
    assert "grouped_daily" in str(ei.value)
    # The vendor echoed the key it was sent; technic scrubbed it everywhere.
    assert srv.requests[0].status == 401
    for e in _chain(ei.value):
        assert KEY not in str(e) and KEY not in repr(e)
    assert KEY not in repr(p) and KEY not in str(p) and KEY not in repr(vars(p))
    assert KEY not in caplog.text
    assert p.request_counts == counts(grouped_daily=1)


def test_transient_failures_log_without_the_key(vendor: Vendor, polygon: Polygon,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = polygon(vendor(faults=[Fault("*", "server_error", times=None)]), max_retries=1)
    with pytest.raises(RetryableProviderError) as ei:
        p.actions(DAY)
    assert "retry 1/1" in caplog.text
    assert KEY not in caplog.text
    assert all(KEY not in str(e) for e in _chain(ei.value))


def test_next_url_is_followed_on_the_configured_host(synth: SyntheticProvider, vendor: Vendor,
                                                     polygon: Polygon) -> None:
    # The vendor's links point elsewhere; the key (and the request) stay on base_url.
    srv = vendor(page_size=9, next_url_base="https://api.polygon.io")
    p = polygon(srv)
    assert len(p.reference()) == len(synth.reference())
    assert p.request_counts["tickers"] == math.ceil(len(synth.reference()) / 9)


# -- configuration ------------------------------------------------------------------------------


def test_from_settings_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                          vendor: Vendor, tmp_path: object
                                                          ) -> None:
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    s = Settings(data_provider="polygon", polygon_base_url=vendor().url)
    with pytest.raises(ConfigError, match="POLYGON_API_KEY"):
        make_provider(s)
    monkeypatch.setenv("MASSIVE_API_KEY", KEY)
    p = make_provider(s)
    try:
        assert isinstance(p, PolygonProvider)
        assert p.base_url == s.polygon_base_url and p.max_retries == s.polygon_max_retries
        assert len(p.bars_for_sessions([DAY])) > 0  # the key from the environment is accepted
        assert KEY not in repr(p)
        assert p.min_request_interval_s is None  # no TECHNIC_POLYGON_RPM: unlimited
    finally:
        p.close()
    monkeypatch.setenv("TECHNIC_POLYGON_RPM", "5")
    free = make_provider(Settings(data_provider="polygon", polygon_base_url=s.polygon_base_url))
    try:
        assert isinstance(free, PolygonProvider)
        assert free.min_request_interval_s == pytest.approx(61 / 5)  # a minute and a second
    finally:
        free.close()
    monkeypatch.setenv("TECHNIC_POLYGON_RPM", "0")
    with pytest.raises(ValueError, match=r"(?i)polygon_rpm"):  # field or variable name
        Settings()


def test_store_key_sessions_and_defaults(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor()
    a = polygon(srv)
    b = polygon(srv, base_url="https://api.massive.com")
    c = polygon(srv, base_url=DEFAULT_URL, end=None, history_start=None)
    assert a.store_key.startswith("polygon-127.0.0.1-") and a.store_key != b.store_key
    assert c.store_key == "polygon-api.polygon.io"
    assert KEY not in a.store_key
    assert a.first_session() == SESSIONS[0] and a.latest_session() == END
    before = latest_completed_session()
    assert c.latest_session() in (before, latest_completed_session())  # a close may pass between
    n = len(sessions_between(c.first_session(), c.latest_session()))
    assert 495 <= n <= 505  # two years of sessions
    assert a.name == "polygon" and a.fetch_batch_sessions == 1


DEFAULT_URL = "https://api.polygon.io"


def test_bad_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="polygon_base_url"):
        PolygonProvider(KEY, base_url="ftp://example")


def test_details_failures_are_tolerated_then_retried(vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor(faults=[Fault("ticker_details", "server_error", key="SPY", times=None)])
    p = polygon(srv, max_retries=1)
    ref = p.reference().set_index("Symbol")
    n = len(ref)
    assert p.details_failed == ["SPY"] and np.isnan(ref.loc["SPY", "SharesOutstanding"])
    assert ref.loc["SPY", "Type"] == gics.ETF  # from the list, which needs no details
    assert p.request_counts == counts(tickers=1, delisted_tickers=1, ticker_details=n - 1 + 2)
    p.reference()  # the failed ticker is asked again; the others are cached
    assert p.request_counts == counts(tickers=1, delisted_tickers=1, ticker_details=n - 1 + 4)
    strict = polygon(srv, max_retries=0, max_details_failures=0, cache_dir=None)
    with pytest.raises(RetryableProviderError, match="ticker_details"):
        strict.reference()


REFERENCE_FAULTS = {
    "tickers 5xx": Fault("tickers", "server_error", times=None),
    "tickers 403": Fault("tickers", "forbidden", times=None),
    "tickers timeout": Fault("tickers", "slow", delay_s=1.0, times=None),
    "tickers reset": Fault("tickers", "reset", times=None),
    "tickers bad JSON": Fault("tickers", "malformed_json", times=None),
    "details 403": Fault("ticker_details", "forbidden", times=None),
    "details 5xx": Fault("ticker_details", "server_error", status=502, times=None),
    "details timeout": Fault("ticker_details", "slow", delay_s=1.0, times=None),
}


@pytest.mark.parametrize("fault", REFERENCE_FAULTS.values(), ids=REFERENCE_FAULTS.keys())
def test_reference_faults_raise_one_line_and_keep_cached_details(
        fault: Fault, vendor: Vendor, polygon: Polygon, tmp_path: Path) -> None:
    srv = vendor()
    now = [0.0]
    p = polygon(srv, clock=lambda: now[0], max_retries=1, timeout_s=0.3,
                max_details_failures=3)
    first = p.reference()
    cache_file = tmp_path / "polygon-cache" / f"{p.store_key}.reference.json"
    before = json.loads(cache_file.read_text())["details"]
    now[0] += 8 * 86_400  # the list is stale and every entry's details are due
    srv.add_fault(fault)
    with pytest.raises(ProviderError) as ei:
        p.reference()
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"polygon {fault.endpoint}")
    assert all(KEY not in str(e) for e in _chain(ei.value))
    if fault.kind == "forbidden":
        assert "HTTP 403" in msg and "POLYGON_API_KEY" in msg
    # Nothing cached was dropped: every ticker keeps its details, new or previous.
    after = json.loads(cache_file.read_text())["details"]
    assert set(after) == set(before)
    assert all(after[t] == before[t] or after[t]["at"] == now[0] for t in before)
    # Once the vendor recovers, the reference is whole again (from a new process too).
    srv.clear_faults()
    pd.testing.assert_frame_equal(p.reference(), first)
    q = polygon(srv, clock=lambda: now[0])
    pd.testing.assert_frame_equal(q.reference(), first)


@pytest.mark.parametrize("text", [
    '{"version": 1, "details": {"SPY": {"found": true}}}',  # an entry without its time
    '{"version": 1, "details": {}, "tickers": {"at": "yesterday", "rows": []}}',
    '{"version": 1, "details": {}, "tickers": {"at": 0, "rows": [{"name": "no ticker"}]}}',
    '[1, 2, 3]', '{"version": 1, "det', ''])
def test_a_damaged_reference_cache_is_ignored_not_a_crash(
        text: str, synth: SyntheticProvider, vendor: Vendor, polygon: Polygon, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    srv = vendor()
    p = polygon(srv)
    cache_file = tmp_path / "polygon-cache" / f"{p.store_key}.reference.json"
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(text)
    assert len(p.reference()) == len(synth.reference())
    assert "ignoring" in caplog.text and "Polygon reference cache" in caplog.text


def test_a_failed_refresh_keeps_that_tickers_previous_details(vendor: Vendor,
                                                              polygon: Polygon) -> None:
    srv = vendor()
    now = [0.0]
    p = polygon(srv, clock=lambda: now[0], max_retries=0)
    first = p.reference().set_index("Symbol")
    sym = str(first["SharesOutstanding"].dropna().index[0])
    assert pd.notna(first.loc[sym, "Sector"])
    now[0] += 8 * 86_400
    srv.add_fault(Fault("ticker_details", "server_error", key=sym, times=None))
    ref = p.reference().set_index("Symbol")
    assert p.details_failed == [sym] and sym in details_asked(srv)
    pd.testing.assert_series_equal(ref.loc[sym], first.loc[sym])
