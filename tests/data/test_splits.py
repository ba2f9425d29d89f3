"""Splits: a stored symbol that splits has its adjusted history re-fetched, and is shared."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from technic_v4.data.market import MarketData
from technic_v4.testing import RedisServer, SplittingProvider, make_market

EPOCH = dt.date(2025, 9, 2)
BEFORE = dt.date(2026, 11, 13)
SPLIT_DAY = dt.date(2026, 11, 17)
AFTER = dt.date(2026, 11, 20)


def _provider(end: dt.date, sym: str) -> SplittingProvider:
    return SplittingProvider({sym: (SPLIT_DAY, 4.0)}, n_listings=80, seed=7, epoch=EPOCH,
                             end=end)


def _market(path: Path, end: dt.date, sym: str, **settings: object) -> MarketData:
    return make_market(path, n=80, epoch=EPOCH, provider=_provider(end, sym), **settings)


def _symbol() -> str:
    ref = SplittingProvider({}, n_listings=80, seed=7, epoch=EPOCH, end=AFTER).reference()
    return str(ref.loc[ref["Type"] == "Common Stock", "Symbol"].iloc[0])


def _closes(md: MarketData, sym: str) -> np.ndarray:
    p = md.panel(md.resolve_as_of(None), 200)
    return p.close[list(p.symbols).index(sym)]


def test_split_refetches_adjusted_history(tmp_path: Path) -> None:
    sym = _symbol()
    old = _market(tmp_path / "inc", BEFORE, sym)
    old.ensure_current()
    raw = _closes(old, sym)
    old.store.close()

    md = _market(tmp_path / "inc", AFTER, sym)
    with md.request() as c:
        rep = md.ensure_current()
        md.panel(AFTER, 50)
    assert rep.splits_applied == [sym]
    assert c.served["vendor"] > 0 and c.hit_rate < 100.0  # the re-fetch is not a cache hit
    assert rep.split_plan == "1 per-ticker requests"
    assert md.provider.request_counts["ticker"] == 1
    assert md.provider.request_counts["splits"] == 1
    fresh = _market(tmp_path / "fresh", AFTER, sym)
    fresh.ensure_current()
    got, want = _closes(md, sym), _closes(fresh, sym)
    np.testing.assert_array_equal(got, want)  # the incremental store equals a fresh one
    # What the store held before was the raw history: 4x the adjusted prices.
    p = md.panel(BEFORE, 200)
    adjusted_then = p.close[list(p.symbols).index(sym)]
    ok = np.isfinite(raw)
    np.testing.assert_allclose(raw[ok], 4.0 * adjusted_then[ok], rtol=1e-12)
    # Nothing new: the next update asks no vendor for splits again.
    again = md.ensure_current()
    assert again.splits_applied == [] and md.provider.request_counts["splits"] == 1
    md.store.close()
    fresh.store.close()


def test_split_is_shared_through_redis(tmp_path: Path) -> None:
    sym = _symbol()
    with RedisServer() as redis:
        a = _market(tmp_path / "a", BEFORE, sym, redis_url=redis.url)
        a.ensure_current()
        a.store.close()
        a = _market(tmp_path / "a", AFTER, sym, redis_url=redis.url)
        assert a.ensure_current().splits_applied == [sym]
        b = _market(tmp_path / "b", AFTER, sym, redis_url=redis.url)
        rep = b.ensure_current()
        assert b.provider.request_counts == {"reference": 0, "grouped_daily": 0, "splits": 0}
        assert rep.splits_applied == []
        np.testing.assert_array_equal(_closes(a, sym), _closes(b, sym))
        a.store.close()
        b.store.close()


def test_no_stale_pre_split_panel_from_redis(tmp_path: Path) -> None:
    sym = _symbol()
    with RedisServer() as redis:
        a = _market(tmp_path / "a", BEFORE, sym, redis_url=redis.url)
        a.ensure_current()
        p = a.panel(BEFORE, 100)  # shared in Redis, unadjusted
        raw = p.close[list(p.symbols).index(sym)]
        a.close()
        a = _market(tmp_path / "a", AFTER, sym, redis_url=redis.url)
        assert a.ensure_current().splits_applied == [sym]
        p = a.panel(BEFORE, 100)
        got = p.close[list(p.symbols).index(sym)]
        ok = np.isfinite(raw)
        np.testing.assert_allclose(got[ok] * 4.0, raw[ok], rtol=1e-12)  # adjusted, not stale
        a.close()


class _ShortRefetch(SplittingProvider):
    def bars_for_symbols(self, symbols: object, start: dt.date, end: dt.date) -> object:
        b = super().bars_for_symbols(symbols, start, end)  # type: ignore[arg-type]
        return b.take(np.arange(min(3, len(b))))  # the vendor sends almost nothing


def test_a_short_refetch_keeps_the_stored_history(tmp_path: Path) -> None:
    sym = _symbol()
    old = _market(tmp_path, BEFORE, sym)
    old.ensure_current()
    bars_before = old.store.bar_counts([sym], EPOCH, AFTER)[sym]
    old.close()
    prov = _ShortRefetch({sym: (SPLIT_DAY, 4.0)}, n_listings=80, seed=7, epoch=EPOCH, end=AFTER)
    md = make_market(tmp_path, n=80, epoch=EPOCH, provider=prov)
    rep = md.ensure_current()
    assert rep.splits_applied == [] and rep.split_error is not None and sym in rep.split_error
    assert md.store.bar_counts([sym], EPOCH, BEFORE)[sym] == bars_before
    assert md.store.get_meta("adjusted_through") != str(AFTER)  # retried next update
    md.close()
