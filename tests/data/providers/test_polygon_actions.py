"""Point in time through Polygon/Massive: unadjusted bars, splits and cash dividends, delisted
listings — PolygonProvider against the loopback vendor server (real HTTP), the server serving a
vendor double with known actions and delistings (so these tests need no embedded-market
actions)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from polygon_setup import KEY, P_EPOCH

from technic_v4.data.bars import FIELDS, BarBatch
from technic_v4.data.calendar import sessions_between
from technic_v4.data.providers.base import (
    ACTION_COLUMNS,
    LISTING_STATUS_COLUMNS,
    REFERENCE_COLUMNS,
)
from technic_v4.data.providers.polygon import ENDPOINTS, PolygonProvider
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.data.store import Store
from technic_v4.errors import ProviderError, RetryableProviderError
from technic_v4.testing import END
from technic_v4.vendor_server import Fault, VendorServer

Vendor = Callable[..., VendorServer]
Polygon = Callable[..., PolygonProvider]
S = [d.astype(dt.date) for d in sessions_between(P_EPOCH, END)]  # 34 sessions, S[-1] == END


def counts(**nonzero: int) -> dict[str, int]:
    return {e: nonzero.get(e, 0) for e in ENDPOINTS}


def ny_midnight(day: dt.date) -> str:
    return f"{pd.Timestamp(day).tz_localize('America/New_York').tz_convert('UTC'):%Y-%m-%dT%H:%M:%SZ}"


class ActionsDouble:
    """A vendor double implementing the provider protocol: the synthetic market's listings and
    bars, made "as traded" around a few known splits (prices before an ex-date x the ratios,
    volumes / the ratios), with known cash dividends and delistings (no bars after the last
    session)."""

    name = "double"
    fetch_batch_sessions = 64

    def __init__(self, base: SyntheticProvider, splits: Sequence[tuple[str, dt.date, float]],
                 dividends: Sequence[tuple[str, dt.date, float]],
                 delisted: dict[str, tuple[dt.date, str]]) -> None:
        self.base = base
        self.splits = list(splits)
        self.dividends = list(dividends)
        self.delisted = dict(delisted)

    @property
    def store_key(self) -> str:
        return "double"

    @property
    def request_counts(self) -> dict[str, int]:
        return {}

    def reference(self) -> pd.DataFrame:
        ref = self.base.reference().copy()
        ref["Delisted"] = pd.to_datetime(ref["Symbol"].map(
            lambda s: self.delisted[s][0] if s in self.delisted else None))
        ref["DelistReason"] = ref["Symbol"].map(
            lambda s: self.delisted[s][1] if s in self.delisted else None)
        return ref

    def latest_session(self) -> dt.date:
        return self.base.latest_session()

    def first_session(self) -> dt.date:
        return self.base.first_session()

    def factor(self, symbols: np.ndarray, dates: np.ndarray) -> np.ndarray:
        """F of each bar: the product of its listing's split ratios with date < ex-date."""
        f = np.ones(len(symbols))
        for sym, ex, ratio in self.splits:
            f[(symbols == sym) & (dates < np.datetime64(ex, "D"))] *= ratio
        return f

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        b = self.base.bars_for_sessions(sessions)
        gone = np.zeros(len(b), dtype=bool)
        for sym, (last, _) in self.delisted.items():
            gone |= (b.symbol == sym) & (b.date > np.datetime64(last, "D"))
        b = b.take(np.flatnonzero(~gone))
        f = self.factor(b.symbol, b.date)
        return BarBatch(b.symbol, b.date, b.open * f, b.high * f, b.low * f, b.close * f,
                        b.volume / f)

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        b = self.bars_for_sessions([d.astype(dt.date) for d in sessions_between(start, end)])
        return b.take(np.flatnonzero(np.isin(b.symbol, list(symbols))))

    def actions(self, since: dt.date) -> pd.DataFrame:
        rows = ([(s, d, "split", r, np.nan) for s, d, r in self.splits]
                + [(s, d, "dividend", np.nan, a) for s, d, a in self.dividends])
        df = pd.DataFrame(rows, columns=list(ACTION_COLUMNS))
        df["ExDate"] = pd.to_datetime(df["ExDate"])
        return df[df["ExDate"] >= pd.Timestamp(since)].reset_index(drop=True)


@pytest.fixture(scope="module")
def names(synth: SyntheticProvider) -> list[str]:
    full = synth.bars_for_sessions(S)
    every = pd.Series(full.symbol).value_counts()
    return sorted(str(s) for s, n in every.items() if n == len(S) and s != "SPY")[:5]


@pytest.fixture(scope="module")
def double(synth: SyntheticProvider, names: list[str]) -> ActionsDouble:
    a, b, c, d, e = names
    return ActionsDouble(
        synth,
        splits=[(a, S[10], 2.0), (a, S[25], 3.0), (b, S[20], 0.1)],  # 2:1 then 3:1; 1:10
        dividends=[(c, S[5], 0.25), (a, S[15], 0.5), (c, S[26], 0.25)],
        delisted={d: (S[12], "bankrupt"), e: (S[30], "acquired")})


def same_bars(a: BarBatch, b: BarBatch) -> None:
    a, b = (x.take(np.lexsort((x.symbol.astype(str), x.date))) for x in (a, b))
    np.testing.assert_array_equal(a.symbol, b.symbol)
    np.testing.assert_array_equal(a.date, b.date)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


# -- bars ---------------------------------------------------------------------------------------


def test_bars_are_requested_unadjusted_and_kept_as_traded(double: ActionsDouble,
                                                          names: list[str], vendor: Vendor,
                                                          polygon: Polygon) -> None:
    srv = vendor(provider=double, aggs_page_size=7)
    p = polygon(srv)
    raw = double.bars_for_sessions(S)
    same_bars(p.bars_for_sessions(S), raw)
    a = names[0]
    same_bars(p.bars_for_symbols([a], S[0], END), raw.take(np.flatnonzero(raw.symbol == a)))
    asked = [r for r in srv.requests if r.endpoint in ("grouped_daily", "aggs_ticker")]
    assert len(asked) == len(S) + math.ceil(len(S) / 7)
    assert all(r.query.get("adjusted") == "false" for r in asked)
    # The control: what the vendor sends by default (adjusted) differs for the split name.
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        body = c.get(f"/v2/aggs/grouped/locale/us/market/stocks/{S[0]}").json()
    adj = {r["T"]: r["c"] for r in body["results"]}
    day0 = raw.take(np.flatnonzero(raw.date == np.datetime64(S[0])))
    assert body["adjusted"] is True
    assert adj[a] != day0.close[day0.symbol == a][0]


def test_adjusted_true_is_raw_over_the_split_factor(double: ActionsDouble, names: list[str],
                                                    synth: SyntheticProvider,
                                                    vendor: Vendor) -> None:
    srv = vendor(provider=double)
    a, b = names[0], names[1]
    raw = double.bars_for_sessions(S)
    # F through the latest session, derived here from the splits alone.
    f = double.factor(raw.symbol, raw.date)
    assert sorted(set(f.round(6))) == [0.1, 1.0, 3.0, 6.0]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for day in (S[0], S[10], S[19], S[20], S[25], END):
            got = {(r["T"]): r for r in c.get(
                f"/v2/aggs/grouped/locale/us/market/stocks/{day}",
                params={"adjusted": "true"}).json()["results"]}
            unadj = {r["T"]: r for r in c.get(
                f"/v2/aggs/grouped/locale/us/market/stocks/{day}",
                params={"adjusted": "false"}).json()["results"]}
            i = np.flatnonzero(raw.date == np.datetime64(day))
            for sym, k in zip(raw.symbol[i], i, strict=True):
                g, u = got[sym], unadj[sym]
                assert u["c"] == raw.close[k] and u["v"] == raw.volume[k]
                for fld in ("o", "h", "l", "c"):
                    assert g[fld] == u[fld] / f[k], (sym, day, fld)
                assert g["v"] == u["v"] * f[k]
                if f[k] == 1.0:  # no split applies: the bar as traded, bit for bit
                    assert all(g[x] == u[x] for x in ("o", "h", "l", "c", "v"))
        # Per-ticker: the adjusted chart of the split names is the continuous synthetic one.
        for sym in (a, b):
            rows = c.get(f"/v2/aggs/ticker/{sym}/range/1/day/{S[0]}/{END}",
                         params={"adjusted": "true"}).json()["results"]
            want = synth.bars_for_sessions(S)
            want_c = want.close[want.symbol == sym]
            np.testing.assert_allclose([r["c"] for r in rows], want_c, rtol=1e-12)


# -- corporate actions --------------------------------------------------------------------------


def test_actions_are_paged_filtered_and_incremental(double: ActionsDouble, vendor: Vendor,
                                                    polygon: Polygon) -> None:
    srv = vendor(provider=double, page_size=2)
    p = polygon(srv)
    got = p.actions(S[0])
    assert tuple(got.columns) == ACTION_COLUMNS
    want = double.actions(S[0]).sort_values(["ExDate", "Symbol", "Type"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert p.request_counts == counts(splits=2, dividends=2)  # 3 of each, 2 a page
    # Incremental: only actions from the last check on (one page each here).
    later = p.actions(S[16])
    assert later["ExDate"].min() >= pd.Timestamp(S[16])
    assert later[["Symbol", "Type"]].values.tolist() == [
        [double.splits[2][0], "split"], [double.splits[1][0], "split"],
        [double.dividends[2][0], "dividend"]]
    assert p.request_counts == counts(splits=3, dividends=3)
    last = [r.query for r in srv.requests][-2:]
    assert last == [
        {"execution_date.gte": str(S[16]), "execution_date.lte": str(END), "limit": "1000",
         "sort": "execution_date", "order": "asc"},
        {"ex_dividend_date.gte": str(S[16]), "ex_dividend_date.lte": str(END),
         "limit": "1000", "sort": "ex_dividend_date", "order": "asc"}]
    assert len(p.actions(END + dt.timedelta(days=1))) == 0


def test_vendor_dividend_kinds_and_currencies(double: ActionsDouble, names: list[str],
                                              vendor: Vendor, polygon: Polygon) -> None:
    c = names[2]
    extra = [{"ticker": c, "ex_dividend_date": str(S[8]), "cash_amount": 1.5,
              "dividend_type": "SC", "currency": "USD"},  # special cash: counts
             {"ticker": "SPY", "ex_dividend_date": str(S[9]), "cash_amount": 0.2,
              "dividend_type": "LT"},  # a fund's capital gain: cash, counts (no currency: USD)
             {"ticker": c, "ex_dividend_date": str(S[9]), "cash_amount": 0.3,
              "dividend_type": "CD", "currency": "CAD"},  # not dollars: skipped
             {"ticker": c, "ex_dividend_date": str(S[11]), "cash_amount": 0.3,
              "dividend_type": "XX", "currency": "USD"}]  # not a cash kind: skipped
    p = polygon(vendor(provider=double, dividends=extra))
    got = p.actions(S[0])
    divs = got[got["Type"] == "dividend"]
    assert len(divs) == len(double.dividends) + 2
    assert {(s, a) for s, a in zip(divs["Symbol"], divs["Amount"], strict=True)} >= {
        (c, 1.5), ("SPY", 0.2)}
    assert p.skipped_actions == {"dividend_currency": 1, "dividend_type": 1}


def test_cash_distributions_on_one_ex_date_add_up(double: ActionsDouble, names: list[str],
                                                 vendor: Vendor, polygon: Polygon,
                                                 tmp_path: Path) -> None:
    """A regular and a special dividend (or a fund's long- and short-term gains) on the same
    ex-date both come off the price: the store keeps one dividend per (listing, ex-date), so
    they reach it as one row of their sum; a row the vendor sends twice counts once."""
    c = names[2]
    extra = [{"ticker": c, "ex_dividend_date": str(S[5]), "cash_amount": 1.0,
              "dividend_type": "SC", "currency": "USD"},
             {"ticker": c, "ex_dividend_date": str(S[5]), "cash_amount": 1.0,
              "dividend_type": "SC", "currency": "USD"},  # the same row again
             {"ticker": "SPY", "ex_dividend_date": str(S[9]), "cash_amount": 0.2,
              "dividend_type": "LT"},
             {"ticker": "SPY", "ex_dividend_date": str(S[9]), "cash_amount": 0.05,
              "dividend_type": "ST"}]
    p = polygon(vendor(provider=double, dividends=extra))
    store = Store(tmp_path / "store.duckdb")
    try:
        store.upsert_reference(p.reference())
        store.upsert_actions(p.actions(S[0]))
        kept = store.actions()
        amount = {(s, d): a for s, d, a in zip(kept["Symbol"], kept["ExDate"].dt.date,
                                              kept["Amount"], strict=True)}
        assert amount[(c, S[5])] == 0.25 + 1.0
        assert amount[("SPY", S[9])] == 0.2 + 0.05
    finally:
        store.close()


def test_bad_action_rows_reach_the_store_which_drops_and_counts_them(
        double: ActionsDouble, names: list[str], vendor: Vendor, polygon: Polygon,
        tmp_path: Path) -> None:
    a, c = names[0], names[2]
    bad_splits: list[Any] = [
        {"ticker": a, "execution_date": str(S[3]), "split_from": 0, "split_to": 2},  # inf
        {"ticker": a, "execution_date": str(S[4]), "split_from": 1, "split_to": None},  # NaN
        {"ticker": "NOPE", "execution_date": str(S[5]), "split_from": 1, "split_to": 2},
        {"ticker": a, "execution_date": "2026-10-32", "split_from": 1, "split_to": 2},
        {"ticker": a, "execution_date": str(S[6]), "split_from": "one", "split_to": 2},
        {"execution_date": str(S[6]), "split_from": 1, "split_to": 2},
    ]
    bad_divs: list[Any] = [
        {"ticker": c, "ex_dividend_date": str(S[7]), "cash_amount": -0.5},
        {"ticker": c, "ex_dividend_date": str(S[8]), "cash_amount": 0},
        {"ticker": c, "ex_dividend_date": str(S[9]), "cash_amount": "0.5"},
    ]
    srv = vendor(provider=double, splits=bad_splits, dividends=bad_divs)
    p = polygon(srv)
    got = p.actions(S[0])
    # Unreadable rows are dropped here and counted (as bars are); bad values pass through.
    assert p.malformed_rows == {"splits_row": 2, "dividends_row": 1}
    assert len(got) == len(double.splits) + len(double.dividends) + 4 + 2
    store = Store(tmp_path / "store.duckdb")
    try:
        store.upsert_reference(p.reference())
        dropped = store.upsert_actions(got)
        assert dropped == {"bad_value": 4, "unknown_symbol": 1, "missing_ex_date": 1,
                           "stored": len(double.splits) + len(double.dividends)}
        kept = store.actions()
        assert sorted(zip(kept["Symbol"], kept["ExDate"].dt.date, kept["Type"], strict=True)) \
            == sorted([(s, d, "split") for s, d, _ in double.splits]
                      + [(s, d, "dividend") for s, d, _ in double.dividends])
    finally:
        store.close()


# -- delisted listings --------------------------------------------------------------------------


def test_delisted_listings_are_in_the_reference_with_their_last_session(
        double: ActionsDouble, names: list[str], vendor: Vendor, polygon: Polygon) -> None:
    d, e = names[3], names[4]
    srv = vendor(provider=double)
    gone = {x["ticker"]: x for x in srv.listings if not x["active"]}
    assert gone[d]["delisted_utc"] == ny_midnight(S[13])  # as Polygon stamps it
    p = polygon(srv)
    ref = p.reference().set_index("Symbol")
    assert tuple(ref.reset_index().columns) == REFERENCE_COLUMNS + LISTING_STATUS_COLUMNS
    assert ref.loc[d, "Delisted"] == pd.Timestamp(S[12])
    assert ref.loc[e, "Delisted"] == pd.Timestamp(S[30])
    assert ref.loc[[d, e], "DelistReason"].tolist() == ["other", "other"]  # no vendor reason
    assert ref["Delisted"].notna().sum() == 2 and ref["DelistReason"].notna().sum() == 2
    assert len(ref) == len(double.reference())
    for col in ("Name", "Type", "Sector"):  # details asked as of the last session
        assert ref.loc[d, col] == double.reference().set_index("Symbol").loc[d, col]
    asked = {r.path.rsplit("/", 1)[-1]: r.query for r in srv.requests
             if r.endpoint == "ticker_details"}
    assert asked[d] == {"date": str(S[12])} and asked[names[0]] == {}
    assert p.request_counts["delisted_tickers"] == 1
    # As of a pinned end before e stopped trading, e was still listed.
    early = polygon(srv, end=S[25], cache_dir=None).reference().set_index("Symbol")
    assert pd.isna(early.loc[e, "Delisted"]) and pd.isna(early.loc[e, "DelistReason"])
    assert early.loc[d, "Delisted"] == pd.Timestamp(S[12])
    # A history that starts after d's last session never saw it trade.
    late = polygon(srv, history_start=S[14], cache_dir=None).reference()
    assert d not in set(late["Symbol"]) and e in set(late["Symbol"])


@pytest.mark.parametrize(("stamp", "last"), [
    ("2026-11-16T05:00:00Z", dt.date(2026, 11, 13)),  # 00:00 NY Monday: last traded Friday
    ("2026-11-16", dt.date(2026, 11, 13)),  # a bare date: 00:00 New York
    ("2026-11-13T21:30:00Z", dt.date(2026, 11, 13)),  # 16:30 NY: after Friday's close
    ("2026-11-13T15:00:00Z", dt.date(2026, 11, 12)),  # 10:00 NY: Friday never closed
    ("2026-11-27T05:00:00Z", dt.date(2026, 11, 25)),  # after Thanksgiving (a holiday)
    ("2026-11-27T18:30:00Z", dt.date(2026, 11, 27)),  # after the 13:00 early close
])
def test_delisted_utc_to_the_last_session(stamp: str, last: dt.date, synth: SyntheticProvider,
                                          vendor: Vendor, polygon: Polygon) -> None:
    srv = vendor(extra_listings=[{"ticker": "GONE", "name": "Gone Inc.", "type": "CS",
                                  "active": False, "delisted_utc": stamp, "sic_code": "7372"}])
    p = polygon(srv, end=dt.date(2026, 11, 30))
    ref = p.reference().set_index("Symbol")
    assert ref.loc["GONE", "Delisted"] == pd.Timestamp(last)


def _gone(ticker: str, stamp: str) -> dict[str, Any]:
    return {"ticker": ticker, "name": f"{ticker} Corp", "type": "CS", "active": False,
            "primary_exchange": "XNYS", "delisted_utc": stamp, "sic_code": "2834",
            "list_date": "2015-03-02"}


def test_delisted_tickers_are_refreshed_incrementally(double: ActionsDouble, names: list[str],
                                                      vendor: Vendor, polygon: Polygon) -> None:
    # Newest first, 2 a page: e (S[31]), X1 (S[20]), d (S[13]), X2 (S[8]), then four that
    # stopped trading before the history served (never asked for beyond the first of them).
    old = [_gone(f"OLD{i}", f"{y}-03-02T05:00:00Z") for i, y in enumerate((2025, 2024, 2023,
                                                                           2022))]
    srv = vendor(provider=double, page_size=2,
                 extra_listings=[_gone("X1", ny_midnight(S[20])), _gone("X2", ny_midnight(S[8])),
                                 *old])
    now = [1_000_000.0]
    p = polygon(srv, clock=lambda: now[0])
    ref = p.reference().set_index("Symbol")
    assert p.request_counts["delisted_tickers"] == 3  # the third page reaches 2025: stop
    assert ref.loc["X1", "Delisted"] == pd.Timestamp(S[19])
    assert not any(s.startswith("OLD") for s in ref.index)
    # Same day: cached. A day later, with a new delisting: newest pages only.
    p.reference()
    assert p.request_counts["delisted_tickers"] == 3
    srv.add_listing(_gone("NEW1", ny_midnight(S[33])))
    now[0] += 86_400
    before = p.request_counts
    ref = p.reference().set_index("Symbol")
    # Page 1 (NEW1, e) ends at the newest cached delisting, page 2 (X1, d) goes a week beyond.
    assert p.request_counts["delisted_tickers"] - before["delisted_tickers"] == 2
    assert ref.loc["NEW1", "Delisted"] == pd.Timestamp(S[32])
    # Every delisting known before is still there (from the cache), none twice.
    assert {"X1", "X2", names[3], names[4], "NEW1"} <= set(ref.index[ref["Delisted"].notna()])
    assert not ref.index.duplicated().any()
    # A new process with the same cache dir costs no delisted request the same day.
    q = polygon(srv, clock=lambda: now[0])
    pd.testing.assert_frame_equal(q.reference(), p.reference())
    assert q.request_counts["delisted_tickers"] == 0


def test_a_reused_symbol_is_the_active_listing(double: ActionsDouble, vendor: Vendor,
                                               polygon: Polygon) -> None:
    srv = vendor(provider=double, extra_listings=[_gone("SPY", ny_midnight(S[4]))])
    p = polygon(srv)
    ref = p.reference()
    assert (ref["Symbol"] == "SPY").sum() == 1
    assert pd.isna(ref.set_index("Symbol").loc["SPY", "Delisted"])
    assert p.delisted_shadowed == ["SPY"]


# -- faults -------------------------------------------------------------------------------------


NEW_ENDPOINTS = {"splits": lambda p: p.actions(S[0]), "dividends": lambda p: p.actions(S[0]),
                 "delisted_tickers": lambda p: p.reference()}


@pytest.mark.parametrize("kind", ["rate_limit", "server_error"])
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
def test_new_endpoints_retry_then_raise(endpoint: str, kind: str, double: ActionsDouble,
                                        vendor: Vendor, polygon: Polygon,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    call = NEW_ENDPOINTS[endpoint]
    srv = vendor(provider=double, faults=[Fault(endpoint, kind, retry_after=0)])
    p = polygon(srv, max_retries=2)
    call(p)  # one fault, then the retry succeeds
    assert p.request_counts[endpoint] == 2
    assert [r.status for r in srv.requests if r.endpoint == endpoint] == [
        429 if kind == "rate_limit" else 503, 200]
    srv.add_fault(Fault(endpoint, kind, retry_after=0, times=None))
    q = polygon(srv, max_retries=2, cache_dir=None)
    with pytest.raises(RetryableProviderError) as ei:
        call(q)
    msg = str(ei.value)
    assert msg.startswith(f"polygon {endpoint} ") and "3 attempts" in msg and "\n" not in msg
    assert q.request_counts[endpoint] == 3
    assert KEY not in caplog.text and KEY not in msg


@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
def test_a_refused_key_on_new_endpoints_is_never_echoed(endpoint: str, double: ActionsDouble,
                                                        vendor: Vendor, polygon: Polygon,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    caplog.set_level(logging.DEBUG)
    # The vendor refuses the key on this endpoint only, echoing it in its message.
    srv = vendor(provider=double, faults=[Fault(endpoint, "unauthorized", times=None)])
    p = polygon(srv)
    with pytest.raises(ProviderError, match=rf"polygon {endpoint} .*HTTP 401") as ei:
        NEW_ENDPOINTS[endpoint](p)
    assert not isinstance(ei.value, RetryableProviderError)
    assert p.request_counts[endpoint] == 1
    assert [r.status for r in srv.requests if r.endpoint == endpoint] == [401]
    e: BaseException | None = ei.value
    while e is not None:
        assert KEY not in str(e) and KEY not in repr(e)
        e = e.__cause__ or e.__context__
    assert KEY not in caplog.text
