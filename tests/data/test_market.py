"""MarketData: panels equal the stored bars, incremental updates, honest counters, as-of rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic_v4.data.calendar import sessions_between
from technic_v4.data.market import MarketData
from technic_v4.data.panel import FIELDS, Panel
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ConfigError, DataError
from technic_v4.testing import END, EPOCH, FaultyProvider, make_market

EPOCH_DAY = np.datetime64("1970-01-01", "D")
FRESH_EPOCH = dt.date(2026, 6, 1)  # ~120 sessions before END: a quick fill


def day_of(d: dt.date | np.datetime64) -> int:
    return int((np.datetime64(d, "D") - EPOCH_DAY).astype(np.int64))


def assert_panels_equal(a: Panel, b: Panel) -> None:
    np.testing.assert_array_equal(a.symbols, b.symbols)
    np.testing.assert_array_equal(a.sids, b.sids)
    np.testing.assert_array_equal(a.day, b.day)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.as_of == b.as_of


def all_stored(md: MarketData) -> pd.DataFrame:
    return md.store.fetch_df(
        "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume FROM bars "
        "ORDER BY sid, date")


# -- panels against the store ------------------------------------------------------------------


@pytest.mark.parametrize("as_of", [END, dt.date(2026, 2, 13)])
@pytest.mark.parametrize("n", [50, 300])
def test_panel_equals_last_n_stored_bars(small_market: MarketData, as_of: dt.date,
                                         n: int) -> None:
    md = small_market
    md.clear_memory()  # a cold load through the store, not a tail of another test's panel
    p = md.panel(as_of, n, adjust="none")  # as traded: the stored bars themselves
    ref = md.reference()
    assert p.symbols.tolist() == ref["Symbol"].tolist()
    np.testing.assert_array_equal(p.sids, ref["sid"].to_numpy())
    assert p.day.shape == (len(ref), n)
    assert p.as_of == as_of

    bars = md.store.fetch_df(
        "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume FROM bars "
        "WHERE date <= ? ORDER BY sid, date", [as_of])
    last_n = {sid: g for sid, g in bars.groupby("sid").tail(n).groupby("sid")}
    sess_days = (sessions_between(EPOCH, as_of) - EPOCH_DAY).astype(np.int64)
    kinds = {"gaps": 0, "halted": 0, "short": 0, "empty": 0}
    for i, sid in enumerate(p.sids.tolist()):
        g = last_n.get(sid)
        k = 0 if g is None else len(g)
        assert (p.day[i, :n - k] == -1).all()
        for f in FIELDS:
            assert np.isnan(getattr(p, f)[i, :n - k]).all()
        if k == 0:
            kinds["empty"] += 1
            continue
        np.testing.assert_array_equal(p.day[i, n - k:], g["day"].to_numpy(), err_msg=str(sid))
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(p, f)[i, n - k:], g[f].to_numpy(),
                                          err_msg=f"{sid} {f}")
        span = np.searchsorted(sess_days, g["day"].iloc[-1]) - np.searchsorted(
            sess_days, g["day"].iloc[0]) + 1
        kinds["gaps"] += span > k
        kinds["halted"] += g["day"].iloc[-1] < sess_days[-6]
        kinds["short"] += k < n
    # The comparison covered the hard cases (names with missing sessions, halted names).
    assert kinds["gaps"] >= 1
    assert kinds["halted"] >= 1
    if n == 300:
        assert kinds["short"] >= 1


def test_panel_tail_from_memory_equals_cold_load(small_market: MarketData) -> None:
    md = small_market
    md.clear_memory()
    cold50 = md.panel(END, 50)
    md.clear_memory()
    md.panel(END, 300)
    with md.request() as c:
        warm50 = md.panel(END, 50)
    assert c.served["memory"] == c.requested > 0
    assert c.served["store"] == 0
    assert_panels_equal(warm50, cold50)


def test_panel_rejects_bad_n(small_market: MarketData) -> None:
    with pytest.raises(ConfigError, match="days") as e:
        small_market.panel(END, 0)
    assert e.value.field == "days"


def test_ensure_current_on_current_store_fetches_nothing(small_market: MarketData) -> None:
    md = small_market
    calls = md.provider.request_counts
    v = md.store.version
    with md.request() as c:
        rep = md.ensure_current()
    assert rep.sessions_fetched == []
    assert rep.rows_stored == 0
    assert not rep.reference_refreshed
    assert md.provider.request_counts == calls
    assert md.store.version == v
    assert c.api_calls == {}
    assert c.served["vendor"] == 0


# -- resolve_as_of -----------------------------------------------------------------------------


@pytest.mark.parametrize(("as_of", "expected"), [
    (None, END),
    (dt.date(2026, 7, 4), dt.date(2026, 7, 2)),  # Saturday after the observed holiday (Friday)
    (dt.date(2025, 12, 25), dt.date(2025, 12, 24)),  # Christmas
    ("2025-04-18", dt.date(2025, 4, 17)),  # Good Friday, as a string
    (dt.date(2025, 6, 15), dt.date(2025, 6, 13)),  # Sunday
    (dt.date(2025, 6, 10), dt.date(2025, 6, 10)),  # a session
    (EPOCH, EPOCH),  # the first session
    (dt.date(2026, 11, 22), END),  # a Sunday after the last stored session
])
def test_resolve_as_of(small_market: MarketData, as_of: object, expected: dt.date) -> None:
    assert small_market.resolve_as_of(as_of) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("as_of", [dt.date(2025, 1, 1), dt.date(2024, 6, 3), "2024-12-31"])
def test_resolve_as_of_before_first_session(small_market: MarketData, as_of: object) -> None:
    with pytest.raises(ConfigError, match="as_of_date") as e:
        small_market.resolve_as_of(as_of)  # type: ignore[arg-type]
    assert e.value.field == "as_of_date"
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("as_of", [dt.date(2027, 3, 1), dt.date(2026, 11, 23)])
def test_resolve_as_of_after_the_latest_session(small_market: MarketData, as_of: dt.date
                                                ) -> None:
    with pytest.raises(ConfigError, match=f"after the latest stored session {END}") as e:
        small_market.resolve_as_of(as_of)
    assert e.value.field == "as_of_date"


def test_resolve_as_of_on_empty_store(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=50, epoch=FRESH_EPOCH)
    with pytest.raises(DataError):
        md.resolve_as_of(None)
    md.store.close()


# -- filling and updating ----------------------------------------------------------------------


def test_first_fill_fetches_every_session(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=120, epoch=FRESH_EPOCH)
    try:
        want = sessions_between(FRESH_EPOCH, END)
        with md.request() as c:
            rep = md.ensure_current()
        assert rep.sessions_fetched == [d.astype(dt.date) for d in want]
        assert rep.reference_refreshed
        np.testing.assert_array_equal(md.store.stored_sessions(), want)
        assert rep.rows_stored == md.store.status()["bars"] > 0
        assert rep.validation.rows_kept == rep.rows_stored
        assert rep.validation.rows_in == rep.rows_stored + rep.validation.rows_dropped
        # One reference call, one actions call and one grouped request per session, nothing more.
        want_calls = {"reference": 1, "actions": 1, "grouped_daily": len(want)}
        assert md.provider.request_counts == want_calls
        assert c.api_calls == want_calls
        assert c.served == {"memory": 0, "redis": 0, "store": 0, "vendor": rep.rows_stored}
        # What was stored is exactly the provider's validated bars.
        p = SyntheticProvider(n_listings=120, seed=7, epoch=FRESH_EPOCH, end=END)
        raw = p.bars_for_sessions([d.astype(dt.date) for d in want])
        from technic_v4.data.bars import validate

        kept, _ = validate(raw)
        sid_of = dict(zip(md.store.reference()["Symbol"], md.store.reference()["sid"],
                          strict=True))
        exp = pd.DataFrame({"sid": [sid_of[s] for s in kept.symbol],
                            "day": (kept.date - EPOCH_DAY).astype(np.int64),
                            **{f: getattr(kept, f) for f in FIELDS}}
                           ).sort_values(["sid", "day"]).reset_index(drop=True)
        got = all_stored(md)
        for col in exp.columns:
            np.testing.assert_array_equal(got[col].to_numpy(), exp[col].to_numpy(), err_msg=col)
    finally:
        md.store.close()


def test_later_end_fetches_exactly_the_new_sessions(tmp_path: Path) -> None:
    end1 = dt.date(2026, 11, 17)
    md = make_market(tmp_path, n=120, epoch=FRESH_EPOCH, end=end1)
    md.ensure_current()
    before = all_stored(md)
    v1 = md.store.version
    md.store.close()

    md2 = make_market(tmp_path, n=120, epoch=FRESH_EPOCH, end=END)
    try:
        assert md2.store.path == md.store.path
        with md2.request() as c:
            rep = md2.ensure_current()
        new = [dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)]
        assert rep.sessions_fetched == new
        assert c.api_calls.get("grouped_daily") == 3
        assert md2.provider.request_counts["grouped_daily"] == 3
        # one transaction for the refreshed reference data, one for the three sessions, one for
        # their corporate actions (when there were any)
        assert md2.store.version == v1 + 2 + (rep.actions_stored > 0)
        after = all_stored(md2)
        old = after[after["day"] <= day_of(end1)].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, before)  # history untouched
        assert set(after.loc[after["day"] > day_of(end1), "day"]) == {day_of(d) for d in new}
        # A third MarketData on the same store and end has nothing to do.
        md2.store.close()
        md3 = make_market(tmp_path, n=120, epoch=FRESH_EPOCH, end=END)
        assert md3.ensure_current().sessions_fetched == []
        assert md3.provider.request_counts == {"reference": 0, "grouped_daily": 0}
        md3.store.close()
    finally:
        md2.store.close()


def _ipo_window() -> tuple[dt.date, dt.date, str]:
    """(end1, end2, symbol): end2 is 3 sessions after end1 and the symbol lists in between."""
    far = SyntheticProvider(n_listings=120, seed=7, epoch=FRESH_EPOCH, end=dt.date(2027, 12, 31))
    ref = far.reference()
    sess = far.sessions
    list_day = ref["ListDate"].to_numpy("datetime64[D]")
    ipo = np.flatnonzero(list_day > sess[40])
    assert len(ipo) > 0
    first = ipo[np.argmin(list_day[ipo])]
    i = int(np.searchsorted(sess, list_day[first]))
    return sess[i - 3].astype(dt.date), sess[i].astype(dt.date), str(ref["Symbol"][first])


def test_update_adds_new_listings(tmp_path: Path) -> None:
    end1, end2, sym = _ipo_window()
    md = make_market(tmp_path, n=120, epoch=FRESH_EPOCH, end=end1)
    md.ensure_current()
    assert sym not in set(md.store.reference()["Symbol"])
    md.store.close()
    md2 = make_market(tmp_path, n=120, epoch=FRESH_EPOCH, end=end2)
    try:
        rep = md2.ensure_current()
        assert len(rep.sessions_fetched) == 3
        assert rep.validation.dropped.get("unknown_symbol", 0) == 0
        assert sym in set(md2.store.reference()["Symbol"])
        p = md2.panel(end2, 5)
        i = p.symbols.tolist().index(sym)
        assert p.day[i, -1] == day_of(end2)
    finally:
        md2.store.close()


def test_ensure_current_through(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=60, epoch=FRESH_EPOCH)
    try:
        mid = dt.date(2026, 8, 14)
        rep = md.ensure_current(through=mid)
        assert rep.sessions_fetched == [d.astype(dt.date) for d in
                                        sessions_between(FRESH_EPOCH, mid)]
        assert md.store.last_session() == mid
        rep = md.ensure_current()
        assert rep.sessions_fetched == [d.astype(dt.date) for d in
                                        sessions_between(dt.date(2026, 8, 15), END)]
        np.testing.assert_array_equal(md.store.stored_sessions(),
                                      sessions_between(FRESH_EPOCH, END))
    finally:
        md.store.close()


def test_bad_vendor_rows_are_dropped_counted_never_stored(tmp_path: Path) -> None:
    probe = SyntheticProvider(n_listings=60, seed=7, epoch=FRESH_EPOCH, end=END)
    ref = probe.reference()
    old = ref[ref["ListDate"] < pd.Timestamp(FRESH_EPOCH)]["Symbol"].tolist()
    nan_sym, neg_sym, dup_sym, zero_sym = old[1:5]
    faulty = FaultyProvider({"nan_close": [nan_sym], "negative_open": [neg_sym],
                             "duplicate": [dup_sym], "zero_volume": [zero_sym]},
                            n_listings=60, seed=7, epoch=FRESH_EPOCH, end=END)
    md = make_market(tmp_path, n=60, epoch=FRESH_EPOCH, provider=faulty)
    try:
        rep = md.ensure_current()
        clean = probe.bars_for_sessions([d.astype(dt.date) for d in probe.sessions])
        n_of = {s: int((clean.symbol == s).sum()) for s in (nan_sym, neg_sym, dup_sym, zero_sym)}
        v = rep.validation
        assert v.dropped["non_finite"] >= n_of[nan_sym]
        assert v.dropped["non_positive_price"] >= n_of[neg_sym]
        assert v.dropped["duplicate"] == n_of[dup_sym]
        assert v.zero_volume_rows >= n_of[zero_sym]
        sid = dict(zip(md.store.reference()["Symbol"], md.store.reference()["sid"], strict=True))
        stored = all_stored(md)
        assert (stored["sid"] == sid[nan_sym]).sum() == 0
        assert (stored["sid"] == sid[neg_sym]).sum() == 0
        dup = stored[stored["sid"] == sid[dup_sym]]
        assert len(dup) == n_of[dup_sym]  # one row per session, the last copy's close
        want_close = clean.close[clean.symbol == dup_sym] * 1.01
        np.testing.assert_allclose(dup["close"].to_numpy(), want_close, rtol=0, atol=0)
        assert (stored.loc[stored["sid"] == sid[zero_sym], "volume"] == 0).all()
        assert (stored["sid"] == sid[zero_sym]).sum() == n_of[zero_sym]
        logged = md.store.fetchall("SELECT sum(rows_in), sum(rows_kept) FROM ingest_log")[0]
        assert logged == (v.rows_in, v.rows_kept)
    finally:
        md.store.close()


# -- counters ----------------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[MarketData]:
    md = make_market(tmp_path, n=80, epoch=FRESH_EPOCH)
    md.ensure_current()
    yield md
    md.store.close()


def test_counters_cold_warm_and_clear(filled: MarketData) -> None:
    md = filled
    md.reset_stats()
    # Cold: every bar comes from the store.
    with md.request() as c1:
        p1 = md.panel(END, 50)
    bars = int(p1.n_bars.sum())
    assert bars > 0
    assert c1.requested == bars
    assert c1.served == {"memory": 0, "redis": 0, "store": bars, "vendor": 0}
    assert c1.api_calls == {}
    assert md.last is c1
    # Warm: the same request is served from memory.
    with md.request() as c2:
        p2 = md.panel(END, 50)
    assert c2.requested == bars
    assert c2.served == {"memory": bars, "redis": 0, "store": 0, "vendor": 0}
    assert_panels_equal(p2, p1)
    stats = md.stats()
    assert stats["hit_rate"] == 100.0
    assert stats["last_request"]["served_by"] == {"memory": bars, "redis": 0, "store": 0, "vendor": 0}
    assert stats["last_request"]["api_calls_total"] == 0
    assert stats["cumulative"]["requested"] == 2 * bars
    assert stats["cumulative"]["served_by"] == {"memory": bars, "redis": 0, "store": bars, "vendor": 0}
    assert stats["cache_size"] == len(p1.symbols)
    assert stats["cache_entries"] >= 1
    # Clearing memory empties the L1 cache; the next load works and comes from the store.
    md.clear_memory()
    stats = md.stats()
    assert stats["cache_size"] == 0
    assert stats["cache_entries"] == 0
    assert stats["cache_bytes"] == 0
    with md.request() as c3:
        p3 = md.panel(END, 50)
    assert c3.served == {"memory": 0, "redis": 0, "store": bars, "vendor": 0}
    assert_panels_equal(p3, p1)


def test_nested_requests_count_once(filled: MarketData) -> None:
    md = filled
    md.reset_stats()
    with md.request() as outer:
        md.panel(END, 20)
        with md.request() as inner:
            md.panel(END, 20)
        assert inner is outer
    assert outer.requested == outer.served["store"] + outer.served["memory"]
    assert outer.served["memory"] == outer.served["store"] > 0
    assert md.total.requested == outer.requested


def test_loads_outside_a_request_are_not_counted(filled: MarketData) -> None:
    md = filled
    md.reset_stats()
    md.panel(END, 30)
    assert md.total.requested == 0
    assert md.stats()["cumulative"]["served_by"] == {"memory": 0, "redis": 0, "store": 0, "vendor": 0}


def test_fill_counts_vendor_bars_and_api_calls(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=80, epoch=FRESH_EPOCH)
    try:
        with md.request() as c:
            rep = md.ensure_current()
        n_sess = len(sessions_between(FRESH_EPOCH, END))
        assert c.served["vendor"] == rep.rows_stored > 0
        calls = {"reference": 1, "actions": 1, "grouped_daily": n_sess}
        assert c.api_calls == calls
        assert md.stats()["api_calls"] == calls
        assert md.stats()["last_request"]["api_calls_total"] == n_sess + 2
        # The next request makes no vendor calls.
        with md.request() as c2:
            md.ensure_current()
            md.panel(END, 10)
        assert c2.api_calls == {}
        assert c2.served["vendor"] == 0
        assert c2.hit_rate == 100.0
    finally:
        md.store.close()


def test_cold_request_counters_are_consistent(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=80, epoch=FRESH_EPOCH)
    try:
        with md.request() as c:  # what a cold scan does
            md.ensure_current()
            p = md.panel(md.resolve_as_of(None), 50)
        assert c.requested == int(p.n_bars.sum())
        assert sum(c.served.values()) == c.requested
        assert 0.0 <= c.hit_rate < 100.0
        assert 0 <= c.as_dict()["hits"] <= c.requested
    finally:
        md.store.close()


def test_fill_only_request_is_not_a_perfect_hit(tmp_path: Path) -> None:
    md = make_market(tmp_path, n=80, epoch=FRESH_EPOCH)
    try:
        with md.request() as c:
            md.ensure_current()
        assert c.served["vendor"] > 0
        assert c.as_dict()["hits"] == 0  # every bar came from the vendor
        assert c.hit_rate < 100.0
    finally:
        md.store.close()
