"""Corporate actions: the store keeps bars as traded, and every update asks the vendor only for
the actions since its last check. A split after the bars were stored is one row of the actions
table, never a re-fetch of history; a failed check keeps the store as it was and is retried;
bad rows are dropped and counted; actions are shared between instances through Redis; delisted
listings stay in the reference."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from technic_v4.data import calendar
from technic_v4.data.fill import ACTIONS, ACTIONS_OVERLAP_SESSIONS
from technic_v4.data.market import MarketData
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.testing import ActionsProvider, RedisServer, make_market

EPOCH = dt.date(2025, 9, 2)
FIRST = dt.date(2025, 9, 2)  # the first session (a Tuesday after Labor Day)
BEFORE = dt.date(2026, 11, 13)
SPLIT_DAY = dt.date(2026, 11, 17)
AFTER = dt.date(2026, 11, 20)
N = 80
# An update after BEFORE asks again from the session ACTIONS_OVERLAP_SESSIONS sessions back.
RECHECK = calendar.sessions_between(FIRST, BEFORE)[-ACTIONS_OVERLAP_SESSIONS].astype(dt.date)


def _symbols(k: int = 2) -> list[str]:
    ref = SyntheticProvider(n_listings=N, seed=7, epoch=EPOCH, end=AFTER).reference()
    return ref.loc[(ref["Type"] == "Common Stock") & (ref["ListDate"] < pd.Timestamp(EPOCH)),
                   "Symbol"].head(k).astype(str).tolist()


def _market(path: Path, end: dt.date, actions: list[tuple[Any, ...]], **kw: Any) -> MarketData:
    settings = {k: kw.pop(k) for k in ("redis_url",) if k in kw}
    # Only the test's actions (the market's own dividends and splits would crowd the counts).
    prov = ActionsProvider(actions, n_listings=N, seed=7, epoch=EPOCH, end=end,
                           own_actions=False, **kw)
    return make_market(path, n=N, epoch=EPOCH, provider=prov, **settings)


def _bars_digest(md: MarketData, through: dt.date) -> tuple[int, int]:
    """An order-independent digest of every stored bar up to ``through``, and their count."""
    got = md.store.fetchall(
        "SELECT bit_xor(hash(s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume)), "
        "count(*) FROM bars b JOIN symbols s USING (sid) WHERE b.date <= ?", [through])[0]
    return int(got[0]), int(got[1])


def _actions(md: MarketData) -> list[tuple[Any, ...]]:
    a = md.store.actions()
    return [(s, str(pd.Timestamp(d).date()), t, None if np.isnan(r) else r,
             None if np.isnan(m) else m)
            for s, d, t, r, m in zip(a["Symbol"], a["ExDate"], a["Type"], a["Ratio"],
                                     a["Amount"], strict=True)]


def test_a_split_after_the_bars_is_one_action_row_and_no_bar_is_rewritten(
        tmp_path: Path) -> None:
    sym = _symbols(1)[0]
    split = [(sym, SPLIT_DAY, "split", 4.0, np.nan)]
    old = _market(tmp_path / "inc", BEFORE, split)
    rep = old.ensure_current()
    # Asked once, from the first stored session; the announced split (ex-date after the last
    # stored session) is left for the check that stores its session.
    assert old.provider.actions_asked == [FIRST]
    assert rep.actions_checked == f"{FIRST}..{BEFORE}" and rep.actions_stored == 0
    assert old.store.get_meta(ACTIONS) == str(BEFORE) and _actions(old) == []
    digest = _bars_digest(old, BEFORE)
    old.close()

    md = _market(tmp_path / "inc", AFTER, split)
    with md.request() as c:
        rep = md.ensure_current()
    # Only what is new: 5 sessions, and the actions since the last check's last few sessions.
    assert md.provider.actions_asked == [RECHECK]
    assert md.provider.request_counts == {"reference": 1, "grouped_daily": 5, "actions": 1}
    assert c.api_calls.get("ticker", 0) == 0
    assert rep.actions_stored == 1 and rep.actions_dropped == {}
    assert _actions(md) == [(sym, str(SPLIT_DAY), "split", 4.0, None)]
    assert _bars_digest(md, BEFORE) == digest  # no stored bar was rewritten
    # The bars stay as traded: the day before the split at ~4x the split day's price.
    b = md.store.fetch_df("SELECT b.date, b.close FROM bars b JOIN symbols s USING (sid) "
                          "WHERE s.symbol = ? ORDER BY b.date", [sym])
    last_before, on_split = b["close"].iloc[-5], b["close"].iloc[-4]
    assert pd.Timestamp(b["date"].iloc[-4]).date() == SPLIT_DAY
    assert 2.5 < last_before / on_split < 6.0
    # The incremental store holds exactly what a store filled in one go holds.
    fresh = _market(tmp_path / "fresh", AFTER, split)
    fresh.ensure_current()
    assert fresh.provider.actions_asked == [FIRST]
    assert md.store.content() == fresh.store.content()
    # Nothing new: no request at all.
    again = md.ensure_current()
    assert again.actions_checked is None and md.provider.request_counts["actions"] == 1
    md.close()
    fresh.close()


def test_an_action_published_late_is_read_by_the_next_check(tmp_path: Path) -> None:
    """A dividend the vendor lists only after its ex-date was checked (published late) is in
    the store after the next update: each check re-reads the last sessions of the previous
    one, in the same single request."""
    sym = _symbols(1)[0]
    late_day = calendar.sessions_between(FIRST, BEFORE)[-2].astype(dt.date)  # checked already
    old = _market(tmp_path, BEFORE, [])
    old.ensure_current()
    assert _actions(old) == []
    old.close()
    md = _market(tmp_path, AFTER, [(sym, late_day, "dividend", np.nan, 0.3)])
    md.ensure_current()
    assert md.provider.actions_asked == [RECHECK] and late_day >= RECHECK
    assert md.provider.request_counts["actions"] == 1
    assert _actions(md) == [(sym, str(late_day), "dividend", None, 0.3)]
    md.close()


def test_a_failed_actions_check_keeps_the_store_and_is_retried(tmp_path: Path) -> None:
    sym = _symbols(1)[0]
    split = [(sym, SPLIT_DAY, "split", 4.0, np.nan)]
    old = _market(tmp_path, BEFORE, split)
    old.ensure_current()
    digest = _bars_digest(old, BEFORE)
    old.close()

    md = _market(tmp_path, AFTER, split, fail_actions=True)
    from technic_v4.data_engine import set_market
    from technic_v4.scanner_core import ScanConfig, run_scan

    set_market(md)
    try:  # the scan that ran the update says what it could not get
        _, msg = run_scan(ScanConfig(max_symbols=5))
    finally:
        set_market(None)
    assert f"corporate actions since {RECHECK} could not be fetched" in msg
    rep = md.last_update
    assert rep is not None
    assert len(rep.sessions_fetched) == 5  # the bars of the new sessions are stored
    err = rep.as_dict()["actions_error"]
    assert err is not None and f"corporate actions since {RECHECK} " \
        "could not be fetched" in err and "HTTP 503" in err and "next update retries" in err
    assert _actions(md) == [] and md.store.get_meta(ACTIONS) == str(BEFORE)
    assert _bars_digest(md, BEFORE) == digest
    md.close()

    md = _market(tmp_path, AFTER, split)
    rep = md.ensure_current()
    assert rep.sessions_fetched == [] and rep.actions_error is None
    assert md.provider.actions_asked == [RECHECK]
    assert _actions(md) == [(sym, str(SPLIT_DAY), "split", 4.0, None)]
    assert md.store.get_meta(ACTIONS) == str(AFTER)
    md.close()


def test_bad_action_rows_are_dropped_and_counted_never_stored(tmp_path: Path) -> None:
    a, b = _symbols(2)
    rows: list[tuple[Any, ...]] = [
        (a, SPLIT_DAY, "dividend", np.nan, 0.25),  # good
        (a, SPLIT_DAY, "merger", 2.0, np.nan),  # unknown type
        (b, SPLIT_DAY, "split", 0.0, np.nan),  # a ratio must be > 0
        (b, SPLIT_DAY, "dividend", np.nan, -1.0),  # so must an amount
        (b, "2026-11-16", "split", "two", np.nan),  # not a number
        ("ZZZZ9", SPLIT_DAY, "split", 2.0, np.nan),  # not a stored listing
        (a, "not a date", "dividend", np.nan, 0.5),  # no ex-date
    ]
    md = _market(tmp_path, AFTER, rows)
    rep = md.ensure_current()
    assert rep.actions_stored == 1
    assert rep.actions_dropped == {"unknown_type": 1, "bad_value": 3, "unknown_symbol": 1,
                                   "missing_ex_date": 1}
    assert rep.as_dict()["actions_dropped"] == rep.actions_dropped
    assert _actions(md) == [(a, str(SPLIT_DAY), "dividend", None, 0.25)]
    md.close()


def test_actions_are_shared_through_redis(tmp_path: Path) -> None:
    sym = _symbols(1)[0]
    acts = [(sym, SPLIT_DAY, "split", 4.0, np.nan), (sym, BEFORE, "dividend", np.nan, 0.1)]
    with RedisServer() as server:
        a = _market(tmp_path / "a", AFTER, acts, redis_url=server.url)
        a.ensure_current()
        assert a.provider.request_counts["actions"] == 1, a.provider.actions_asked
        key = f"technic:{a.provider.store_key}:actions"  # carries the dataset
        r = redis.Redis.from_url(server.url)
        assert r.exists(key) and r.ttl(key) > 0
        b = _market(tmp_path / "b", AFTER, acts, redis_url=server.url)
        b.ensure_current()
        assert b.provider.request_counts == {"reference": 0, "grouped_daily": 0, "actions": 0}
        assert _actions(b) == _actions(a) and len(_actions(a)) == 2
        assert a.store.content() == b.store.content()
        # A value that is not what technic writes is a miss: the vendor is asked.
        r.set(key, b"\xff not arrow")
        c = _market(tmp_path / "c", AFTER, acts, redis_url=server.url)
        c.ensure_current()
        assert c.provider.request_counts["actions"] == 1 and c.l3 is not None
        assert c.l3.errors >= 1 and _actions(c) == _actions(a)
        # Another dataset never reads these keys.
        other = ActionsProvider(acts, n_listings=N, seed=8, epoch=EPOCH, end=AFTER)
        d = make_market(tmp_path / "d", n=N, epoch=EPOCH, seed=8, provider=other,
                        redis_url=server.url)
        d.ensure_current()
        assert other.request_counts["actions"] == 1, other.actions_asked
        for m in (a, b, c, d):
            m.close()


def test_a_second_instance_reads_the_actions_two_checks_fetched(tmp_path: Path) -> None:
    """The ledger in Redis grows with each check (a cold fill, then daily updates): an instance
    that fills its empty store later asks the vendor nothing, although its check spans both."""
    sym = _symbols(1)[0]
    acts = [(sym, SPLIT_DAY, "split", 4.0, np.nan), (sym, BEFORE, "dividend", np.nan, 0.1)]
    with RedisServer() as server:
        a = _market(tmp_path / "a", BEFORE, acts, redis_url=server.url)
        a.ensure_current()  # checks FIRST..BEFORE
        a.close()
        a = _market(tmp_path / "a", AFTER, acts, redis_url=server.url)
        a.ensure_current()  # checks the day after BEFORE..AFTER
        assert a.provider.actions_asked == [RECHECK]
        b = _market(tmp_path / "b", AFTER, acts, redis_url=server.url)
        b.ensure_current()  # checks FIRST..AFTER: inside the ledger
        assert b.provider.request_counts["actions"] == 0
        assert _actions(b) == _actions(a) and len(_actions(a)) == 2
        assert a.store.content() == b.store.content()
        a.close()
        b.close()


class Delisting(ActionsProvider):
    """``delisted`` listings carry their last session and reason in the vendor's reference;
    ``vanished`` ones are no longer listed at all; ``ghosts`` are old listings the vendor lists
    as delisted before any stored session (no bars to fill)."""

    def __init__(self, delisted: dict[str, tuple[dt.date, str]], vanished: set[str],
                 ghosts: dict[str, dt.date], **kw: Any) -> None:
        super().__init__(**kw)
        self.delisted, self.vanished, self.ghosts = delisted, vanished, ghosts

    def reference(self) -> pd.DataFrame:
        ref = super().reference()
        ref = ref[~ref["Symbol"].isin(self.vanished)].reset_index(drop=True)
        ref["Delisted"] = pd.Series(pd.NaT, index=ref.index, dtype="datetime64[ns]")
        ref["DelistReason"] = pd.Series(None, index=ref.index, dtype=object)
        for s, (day, why) in self.delisted.items():
            ref.loc[ref["Symbol"] == s, ["Delisted", "DelistReason"]] = [pd.Timestamp(day), why]
        for s, day in self.ghosts.items():
            row = ref.iloc[[0]].copy()
            row[["Symbol", "Name", "ListDate", "Delisted", "DelistReason"]] = [
                s, s, pd.Timestamp("2001-01-02"), pd.Timestamp(day), "bankrupt"]
            ref = pd.concat([ref, row], ignore_index=True)
        return ref


def test_delisted_listings_stay_across_reference_refreshes(tmp_path: Path) -> None:
    gone, other = _symbols(2)
    sessions = calendar.sessions_between(EPOCH, AFTER)
    mid = sessions[-3].astype(dt.date)
    last_day = sessions[-4].astype(dt.date)

    def market(end: dt.date, delisted: dict[str, tuple[dt.date, str]],
               vanished: set[str]) -> MarketData:
        prov = Delisting(delisted, vanished, {"GHOST": dt.date(2024, 3, 1)}, n_listings=N,
                         seed=7, epoch=EPOCH, end=end)
        return make_market(tmp_path, n=N, epoch=EPOCH, provider=prov)

    md = market(BEFORE, {}, set())
    md.ensure_current()
    n_bars = md.store.bar_counts([gone], FIRST, BEFORE)[gone]
    md.close()
    # The vendor reports the listing delisted (acquired; last traded on ``last_day``) ...
    md = market(mid, {gone: (last_day, "acquired")}, set())
    rep = md.ensure_current()
    assert rep.reference_refreshed and rep.backfilled == []  # GHOST has no bars to fill
    md.close()
    # ... then stops listing it at all (and another listing vanishes without a word).
    md = market(AFTER, {}, {gone, other})
    rep = md.ensure_current()
    assert rep.reference_refreshed
    ref = md.store.reference().set_index("Symbol")
    assert pd.Timestamp(ref.loc[gone, "Delisted"]).date() == last_day
    assert ref.loc[gone, "DelistReason"] == "acquired"
    assert other in ref.index and pd.isna(ref.loc[other, "Delisted"])  # never deleted
    assert pd.Timestamp(ref.loc["GHOST", "Delisted"]).date() == dt.date(2024, 3, 1)
    assert md.store.bar_counts([gone], FIRST, BEFORE)[gone] == n_bars  # its history stays
    assert md.store.get_meta("backfill_pending") in (None, "[]")
    md.close()


class Hidden(ActionsProvider):
    """The vendor's reference list lacks ``hidden`` (a listing page was missing)."""

    def __init__(self, hidden: set[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.hidden = hidden

    def reference(self) -> pd.DataFrame:
        ref = super().reference()
        return ref[~ref["Symbol"].isin(self.hidden)].reset_index(drop=True)


def test_a_late_listing_gets_its_earlier_actions_with_its_history(tmp_path: Path) -> None:
    """Its actions were dropped as an unknown listing's while the reference lacked it: the
    back-fill takes the actions check back to the history it fills (one request)."""
    sym = _symbols(1)[0]
    split = [(sym, dt.date(2026, 3, 2), "split", 3.0, np.nan)]

    def market(end: dt.date, hidden: set[str]) -> MarketData:
        prov = Hidden(hidden, actions=split, n_listings=N, seed=7, epoch=EPOCH, end=end,
                      own_actions=False)
        return make_market(tmp_path / "inc", n=N, epoch=EPOCH, provider=prov)

    old = market(BEFORE, {sym})
    rep = old.ensure_current()
    assert rep.actions_dropped == {"unknown_symbol": 1} and _actions(old) == []
    old.close()
    md = market(AFTER, set())
    rep = md.ensure_current()
    assert rep.backfilled == [sym]
    assert md.provider.actions_asked == [FIRST]  # back to the back-filled history's start
    assert _actions(md) == [(sym, "2026-03-02", "split", 3.0, None)]
    fresh = _market(tmp_path / "fresh", AFTER, split)
    fresh.ensure_current()
    assert md.store.content() == fresh.store.content()
    md.close()
    fresh.close()


class Window(ActionsProvider):
    """A vendor whose history window starts at ``start`` (Polygon's ``history_days``, a files
    folder given older files): moving it back adds sessions before the first stored one."""

    start = FIRST

    def first_session(self) -> dt.date:
        return self.start


def test_a_longer_history_window_gets_the_actions_of_the_older_sessions(
        tmp_path: Path) -> None:
    sym = _symbols(1)[0]
    old_split = dt.date(2025, 11, 3)
    later = dt.date(2026, 1, 5)
    split = [(sym, old_split, "split", 2.0, np.nan)]

    def market(start: dt.date) -> MarketData:
        prov = Window(split, n_listings=N, seed=7, epoch=EPOCH, end=AFTER, own_actions=False)
        prov.start = start
        return make_market(tmp_path, n=N, epoch=EPOCH, provider=prov)

    md = market(later)
    md.ensure_current()
    assert md.store.stored_sessions()[0] == np.datetime64(later) and _actions(md) == []
    md.close()

    md = market(FIRST)  # the window now reaches back before the split
    rep = md.ensure_current()
    assert md.store.stored_sessions()[0] == np.datetime64(FIRST)
    assert rep.actions_checked is not None and rep.actions_error is None
    # The split of the older sessions is stored: their bars, as traded, are adjusted in views.
    assert _actions(md) == [(sym, str(old_split), "split", 2.0, None)]
    md.close()
