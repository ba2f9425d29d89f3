"""Listings that appear in the reference after their history began get that history back-filled
(fewest requests), and are scanned, never dropped as "history < 200"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ProviderError
from technic_v4.pipeline import scan
from technic_v4.testing import END, RedisServer, make_market

EPOCH = dt.date(2025, 9, 2)  # ~310 sessions to END: enough for min_history 200
END1 = dt.date(2026, 11, 13)  # the first update; the second adds 5 sessions
N = 120


class LateListings(SyntheticProvider):
    """The vendor's reference list lacks ``hidden`` (a listing page was missing, or the tickers
    were renamed later); their bars are in the grouped data all along."""

    def __init__(self, hidden: Sequence[str] = (), fail_tickers: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.hidden = set(hidden)
        self.fail_tickers = fail_tickers

    def reference(self) -> pd.DataFrame:
        ref = super().reference()
        return ref[~ref["Symbol"].isin(self.hidden)].reset_index(drop=True)

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> Any:
        if self.fail_tickers:
            self._requests["ticker"] = self._requests.get("ticker", 0) + len(symbols)
            raise ProviderError("aggs ticker: HTTP 503 after retries")
        return super().bars_for_symbols(symbols, start, end)


def _old_names(k: int, epoch: dt.date = EPOCH) -> list[str]:
    """``k`` common stocks listed before ``epoch``, largest first (they pass the pre-screen)."""
    ref = SyntheticProvider(n_listings=N, seed=7, epoch=epoch, end=END).reference()
    ref = ref[(ref["Type"] == "Common Stock") & (ref["ListDate"] < pd.Timestamp(epoch))]
    return ref.sort_values("SharesOutstanding", ascending=False)["Symbol"].head(k).tolist()


def _market(path: Path, end: dt.date, epoch: dt.date = EPOCH, **kw: Any) -> MarketData:
    prov = LateListings(n_listings=N, seed=7, epoch=epoch, end=end, **kw)
    return make_market(path, n=N, epoch=epoch, provider=prov)


def _history(md: MarketData, syms: list[str]) -> pd.DataFrame:
    return md.store.fetch_df(
        "SELECT s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume FROM bars b JOIN "
        "symbols s USING (sid) WHERE s.symbol IN (SELECT unnest(?)) ORDER BY 1, 2",
        [syms])


SHORT_EPOCH = dt.date(2026, 10, 1)  # ~31 sessions to END1: fewer sessions than 60 symbols


@pytest.mark.parametrize(("epoch", "k", "grouped"), [(EPOCH, 1, False), (EPOCH, 60, False),
                                                     (SHORT_EPOCH, 60, True)])
def test_a_listing_new_to_the_reference_gets_its_history(tmp_path: Path, epoch: dt.date,
                                                         k: int, grouped: bool) -> None:
    target = _old_names(1, epoch)[0]
    ref = SyntheticProvider(n_listings=N, seed=7, epoch=epoch, end=END).reference()
    # Listings of any type and age, but with history before END1 (later ones are not "late").
    others = ref.loc[ref["ListDate"] <= pd.Timestamp(END1), "Symbol"]
    syms = [target, *[s for s in others if s != target][:k - 1]]
    old = _market(tmp_path / "inc", END1, epoch, hidden=syms)
    rep1 = old.ensure_current()
    assert rep1.validation.dropped["unknown_symbol"] > 0  # their bars had nowhere to go
    n_before = len(old.store.stored_sessions())
    old.close()

    md = _market(tmp_path / "inc", END, epoch)
    fresh = _market(tmp_path / "fresh", END, epoch)
    try:
        with md.request() as c:
            rep = md.ensure_current()
        assert rep.backfilled == sorted(syms)
        # Fewer requests wins: one per ticker, or one grouped request per stored session.
        calls = md.provider.request_counts
        if grouped:
            assert n_before < k
            assert rep.backfill_plan == f"{n_before} grouped requests"
            assert calls == {"reference": 1, "actions": 1, "grouped_daily": 5 + n_before}
        else:
            assert k < n_before
            assert rep.backfill_plan == f"{k} per-ticker requests"
            assert calls == {"reference": 1, "actions": 1, "grouped_daily": 5, "ticker": k}
        assert c.served["vendor"] > 0
        fresh.ensure_current()
        pd.testing.assert_frame_equal(_history(md, syms), _history(fresh, syms))
        assert md.store.get_meta("backfill_pending") == "[]"
        # Scanned with its full history, like in a store that always knew it.
        hist = 200 if epoch == EPOCH else 30
        cfg = ScanConfig(symbols=[target], min_history=hist, lookback_days=max(hist, 30),
                         min_tech_rating=0, only_tradeable=False)
        got, want = scan(cfg, md), scan(cfg, fresh)
        assert got.frame["Symbol"].tolist() == [target]
        assert f"history < {hist} sessions" not in str(got.stats["stages"])
        pd.testing.assert_frame_equal(got.frame, want.frame)
        # Nothing left to do.
        again = md.ensure_current()
        assert again.backfilled == [] and again.backfill_plan is None
    finally:
        md.close()
        fresh.close()


def test_a_failed_backfill_is_retried_by_the_next_update(tmp_path: Path) -> None:
    syms = _old_names(1)
    old = _market(tmp_path, END1, hidden=syms)
    old.ensure_current()
    old.close()
    md = _market(tmp_path, END, fail_tickers=True)
    rep = md.ensure_current()
    assert rep.backfilled == [] and "could not be fetched" in (rep.backfill_error or "")
    res = scan(ScanConfig(top_n=5), md)
    assert "history of 1 new listing(s) could not be fetched" in res.message
    md.close()
    md = _market(tmp_path, END)
    fresh = _market(tmp_path / "fresh", END)
    try:
        rep = md.ensure_current()
        assert rep.sessions_fetched == [] and rep.backfilled == syms
        fresh.ensure_current()
        pd.testing.assert_frame_equal(_history(md, syms), _history(fresh, syms))
    finally:
        md.close()
        fresh.close()


def test_a_shared_panel_from_before_the_backfill_is_not_reused(tmp_path: Path,
                                                               redis_server: RedisServer
                                                               ) -> None:
    syms = _old_names(1)
    url = {"redis_url": redis_server.url}
    old = make_market(tmp_path, n=N, epoch=EPOCH, **url,
                      provider=LateListings(n_listings=N, seed=7, epoch=EPOCH, end=END1,
                                            hidden=syms))
    old.ensure_current()
    old.close()
    md = make_market(tmp_path, n=N, epoch=EPOCH, **url,
                     provider=LateListings(n_listings=N, seed=7, epoch=EPOCH, end=END,
                                           fail_tickers=True))
    assert md.ensure_current().backfill_error is not None
    md.panel(END, 250)  # shared through Redis with the listing's history missing
    md.close()
    md = make_market(tmp_path, n=N, epoch=EPOCH, **url,
                     provider=LateListings(n_listings=N, seed=7, epoch=EPOCH, end=END))
    fresh = _market(tmp_path / "fresh", END)
    try:
        assert md.ensure_current().backfilled == syms
        fresh.ensure_current()
        p, q = md.panel(END, 250), fresh.panel(END, 250)
        i, j = p.symbols.tolist().index(syms[0]), q.symbols.tolist().index(syms[0])
        pd.testing.assert_frame_equal(p.frame(i), q.frame(j))
    finally:
        md.close()
        fresh.close()


def test_a_pending_listing_dated_after_every_stored_session_is_dropped_not_a_crash(
        tmp_path: Path) -> None:
    """The vendor corrected a pending listing's list date past the stored sessions: there is
    nothing to back-fill (new sessions bring its bars), so the pending entry goes and updates and
    scans go on (an IndexError on every update before)."""
    import json

    from technic_v4.data.fill import BACKFILL

    md = make_market(tmp_path, n=200)
    md.ensure_current()
    last = md.store.last_session()
    ref = md.reference().drop(columns="sid")
    sym = str(ref["Symbol"].iloc[5])
    ref.loc[ref["Symbol"] == sym, "ListDate"] = pd.Timestamp(last + dt.timedelta(days=3))
    md.store.upsert_reference(ref)
    md.store.set_meta(BACKFILL, json.dumps([sym]))
    for _ in range(2):
        res = scan(ScanConfig(max_symbols=5), md)
        assert len(res.frame) > 0
    assert json.loads(md.store.get_meta(BACKFILL) or "[]") == []
    md.store.close()
