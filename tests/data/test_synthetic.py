"""The synthetic provider: deterministic, append-only history, realistic reference data and
the broken rows validation must catch."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from technic_v4.data.bars import FIELDS, BarBatch, validate
from technic_v4.data.calendar import sessions_between
from technic_v4.data.providers.base import LISTING_STATUS_COLUMNS, REFERENCE_COLUMNS
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.testing import END, EPOCH
from technic_v4.universe import gics

SHORT_EPOCH = dt.date(2026, 6, 1)  # ~120 sessions before END


def provider(n: int = 150, seed: int = 11, epoch: dt.date = SHORT_EPOCH,
             end: dt.date = END) -> SyntheticProvider:
    return SyntheticProvider(n_listings=n, seed=seed, epoch=epoch, end=end)


def all_bars(p: SyntheticProvider) -> BarBatch:
    return p.bars_for_sessions([d.astype(dt.date) for d in p.sessions])


def assert_batches_equal(a: BarBatch, b: BarBatch) -> None:
    assert len(a) == len(b)
    for f in ("symbol", "date", *FIELDS):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def sorted_batch(b: BarBatch) -> BarBatch:
    return b.take(np.lexsort((b.symbol.astype(str), b.date)))


@pytest.fixture(scope="module")
def long_market() -> tuple[SyntheticProvider, BarBatch]:
    """The 400-listing market of the shared fixtures, as raw (unvalidated) vendor bars."""
    p = SyntheticProvider(n_listings=400, seed=7, epoch=EPOCH, end=END)
    return p, all_bars(p)


# -- determinism and append-only history ------------------------------------------------------


def test_same_arguments_same_data() -> None:
    a, b = provider(), provider()
    pd.testing.assert_frame_equal(a.reference(), b.reference())
    assert_batches_equal(all_bars(a), all_bars(b))
    assert a.store_key == b.store_key


def test_later_end_never_changes_history() -> None:
    short = provider()
    longer = provider(end=dt.date(2026, 12, 31))
    assert len(longer.sessions) > len(short.sessions)
    np.testing.assert_array_equal(longer.sessions[:len(short.sessions)], short.sessions)
    common = [d.astype(dt.date) for d in short.sessions]
    assert_batches_equal(short.bars_for_sessions(common), longer.bars_for_sessions(common))
    # Reference data of the shorter market is a prefix-compatible subset of the longer one
    # (shares outstanding are as of the end, so they move with later splits, and delistings
    # after the shorter end are news: tests/data/test_synthetic_actions.py checks both).
    rs, rl = short.reference(), longer.reference()
    assert set(rs["Symbol"]) <= set(rl["Symbol"])
    merged = rs.merge(rl, on="Symbol", suffixes=("_s", "_l"))
    assert len(merged) == len(rs)
    for col in REFERENCE_COLUMNS[1:]:
        if col != "SharesOutstanding":
            pd.testing.assert_series_equal(merged[f"{col}_s"], merged[f"{col}_l"],
                                           check_names=False)
    # Same store file for both (the store key does not depend on the end).
    assert short.store_key == longer.store_key


def test_subset_of_sessions_equals_the_same_rows_of_the_full_request() -> None:
    p = provider()
    full = all_bars(p)
    pick = p.sessions[[0, 3, 4, 57, len(p.sessions) - 1]]
    sub = p.bars_for_sessions([d.astype(dt.date) for d in pick[::-1]])  # order does not matter
    assert_batches_equal(sub, full.take(np.flatnonzero(np.isin(full.date, pick))))
    assert set(sub.date.tolist()) == set(pick.tolist())


def test_non_sessions_give_no_bars() -> None:
    p = provider()
    assert len(p.bars_for_sessions([dt.date(2026, 7, 4), dt.date(2026, 7, 5)])) == 0
    assert len(p.bars_for_sessions([dt.date(2020, 1, 2)])) == 0  # before the epoch
    got = p.bars_for_sessions([dt.date(2026, 7, 4), dt.date(2026, 7, 2)])
    assert set(got.date.tolist()) == {dt.date(2026, 7, 2)}


def test_different_seed_different_data() -> None:
    a, b = provider(seed=11), provider(seed=12)
    assert a.store_key != b.store_key
    assert a.reference()["Symbol"].tolist() != b.reference()["Symbol"].tolist()
    ba, bb = all_bars(a), all_bars(b)
    spy_a = ba.close[ba.symbol == "SPY"]
    spy_b = bb.close[bb.symbol == "SPY"]
    assert len(spy_a) == len(spy_b) == len(a.sessions)
    assert not np.array_equal(spy_a, spy_b)


def test_store_key_depends_on_listings_seed_epoch() -> None:
    base = provider()
    keys = {base.store_key, provider(n=151).store_key, provider(seed=12).store_key,
            provider(epoch=dt.date(2026, 6, 2)).store_key}
    assert len(keys) == 4


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_listings"):
        SyntheticProvider(n_listings=9, end=END)
    with pytest.raises(ValueError, match="at least 2 sessions"):
        SyntheticProvider(n_listings=50, epoch=dt.date(2026, 11, 20), end=dt.date(2026, 11, 22))


# -- reference data ---------------------------------------------------------------------------


def test_reference_data_shape() -> None:
    p = SyntheticProvider(n_listings=2000, seed=3, epoch=EPOCH, end=END)
    ref = p.reference()
    assert tuple(ref.columns) == REFERENCE_COLUMNS + LISTING_STATUS_COLUMNS
    assert ref["Symbol"].is_unique
    assert ref["Symbol"].map(lambda s: isinstance(s, str) and len(s) > 0).all()
    spy = ref[ref["Symbol"] == "SPY"]
    assert len(spy) == 1
    assert spy["Type"].iloc[0] == gics.ETF
    assert set(ref["Type"]) == set(gics.TYPES)
    common = ref[ref["Type"] == gics.COMMON_STOCK]
    assert set(common["Sector"]) == set(gics.SECTORS)
    # Every listed sector/industry pair is a GICS pair; funds have none.
    stocks = ref[ref["Sector"].notna()]
    assert all(ind in gics.SECTOR_INDUSTRIES[sec]
               for sec, ind in zip(stocks["Sector"], stocks["Industry"], strict=True))
    funds = ref[ref["Type"].isin([gics.ETF, gics.LEVERAGED_ETF, gics.INVERSE_ETF])]
    assert funds["Sector"].isna().all()
    assert (ref["SharesOutstanding"] > 0).all()
    # Nobody in the reference data lists after the end.
    assert (ref["ListDate"] <= pd.Timestamp(END)).all()
    assert p.request_counts["reference"] == 1


def test_ipos_and_halts(long_market: tuple[SyntheticProvider, BarBatch]) -> None:
    p, bars = long_market
    ref = p.reference()
    sess = p.sessions
    list_day = ref["ListDate"].to_numpy("datetime64[D]")
    assert (list_day > np.datetime64(p.epoch, "D")).sum() >= 5  # IPOs after the epoch
    assert (list_day > sess[-120]).sum() >= 1  # some with only weeks of history
    df = pd.DataFrame({"symbol": bars.symbol, "date": bars.date})
    first = df.groupby("symbol")["date"].min()
    last = df.groupby("symbol")["date"].max()
    # Bars never precede the listing date (the panel loader relies on it) ...
    ld = pd.Series(list_day, index=ref["Symbol"]).reindex(first.index)
    assert (first.to_numpy("datetime64[D]") >= ld.to_numpy("datetime64[D]")).all()
    # ... and an IPO's first bar is its first session on or after the listing date.
    ipo = ref.loc[list_day > sess[0], "Symbol"]
    assert len(ipo) > 0
    ipo_list = ld[ipo].to_numpy("datetime64[D]")
    want = sess[np.searchsorted(sess, ipo_list)]
    np.testing.assert_array_equal(first[ipo].to_numpy("datetime64[D]"), want)
    # Delisted names: the last bar is well before the end, on the reference's Delisted.
    halted = last[last.to_numpy("datetime64[D]") < sess[-20]]
    assert len(halted) >= 1
    delisted = ref.set_index("Symbol")["Delisted"].reindex(halted.index)
    np.testing.assert_array_equal(delisted.to_numpy("datetime64[D]"),
                                  halted.to_numpy("datetime64[D]"))
    # Only listed names have bars.
    assert set(bars.symbol.tolist()) <= set(ref["Symbol"])


def test_broken_rows_exist_and_validation_drops_them(
        long_market: tuple[SyntheticProvider, BarBatch]) -> None:
    _, bars = long_market
    kept, rep = validate(bars)
    assert rep.dropped["non_finite"] >= 1
    assert rep.dropped["non_positive_price"] >= 1
    assert rep.dropped["inconsistent_range"] >= 1
    assert rep.dropped["duplicate"] == 0  # the provider never duplicates a row
    assert rep.zero_volume_rows >= 10
    assert rep.rows_in == len(bars) == rep.rows_kept + rep.rows_dropped
    # What is left is clean.
    prices = np.stack([kept.open, kept.high, kept.low, kept.close])
    assert np.isfinite(prices).all()
    assert np.isfinite(kept.volume).all()
    assert (prices > 0).all()
    assert (kept.volume >= 0).all()
    assert (kept.low <= np.minimum(kept.open, kept.close)).all()
    assert (kept.high >= np.maximum(kept.open, kept.close)).all()


def test_missing_sessions_exist(long_market: tuple[SyntheticProvider, BarBatch]) -> None:
    """Some names skip a session between their first and last bar (a vendor gap)."""
    p, bars = long_market
    df = pd.DataFrame({"symbol": bars.symbol, "date": bars.date})
    g = df.groupby("symbol")["date"].agg(["min", "max", "count"])
    sess = p.sessions
    expected = (np.searchsorted(sess, g["max"].to_numpy("datetime64[D]"), side="right")
                - np.searchsorted(sess, g["min"].to_numpy("datetime64[D]")))
    gaps = expected - g["count"].to_numpy()
    assert (gaps >= 0).all()
    assert (gaps > 0).sum() >= 3


def test_request_counts() -> None:
    p = provider(n=60)
    assert p.request_counts == {"reference": 0, "grouped_daily": 0}
    p.reference()
    p.reference()
    assert p.request_counts == {"reference": 2, "grouped_daily": 0}
    five = [d.astype(dt.date) for d in p.sessions[10:15]]
    p.bars_for_sessions(five)
    assert p.request_counts == {"reference": 2, "grouped_daily": 5}
    p.bars_for_sessions(five[:1])
    assert p.request_counts == {"reference": 2, "grouped_daily": 6}
    # The counts are a snapshot, not a handle on the provider's state.
    snap = p.request_counts
    snap["grouped_daily"] = 1000
    assert p.request_counts["grouped_daily"] == 6


def test_sessions_are_the_nyse_sessions() -> None:
    p = provider()
    np.testing.assert_array_equal(p.sessions, sessions_between(SHORT_EPOCH, END))
    assert p.first_session() == dt.date(2026, 6, 1)
    assert p.latest_session() == END


# -- price levels and returns inside what US listings show ------------------------------------
# The bounds are the README's ("Data providers"). Real US listings: apart from BRK.A the highest
# close is NVR's (< $10,000), about 20 of ~5,000 common stocks trade above $1,000, one-year
# returns above +1,000 % are rare and the 2020-21 meme stocks topped out around +5,000 %.


@pytest.fixture(scope="module")
def default_market() -> tuple[np.ndarray, np.ndarray]:
    """Validated raw (as traded) closes of the default embedded market as a (session, listing)
    matrix, NaN where a listing has no bar; and which listings go bankrupt."""
    p = SyntheticProvider(end=END)  # the default listings, seed and epoch
    kept, _ = validate(all_bars(p))
    col, names = pd.factorize(kept.symbol)
    closes = np.full((len(p.sessions), len(names)), np.nan)
    closes[np.searchsorted(p.sessions, kept.date), col] = kept.close
    ref = p.reference().set_index("Symbol")
    return closes, (ref["DelistReason"].reindex(names) == "bankrupt").to_numpy()


@pytest.fixture(scope="module")
def default_closes(default_market: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return default_market[0]


def test_price_levels_stay_in_the_range_of_us_listings(default_closes: np.ndarray) -> None:
    c = default_closes
    assert np.nanmax(c) <= 10_000.0
    assert np.nanmin(c) >= 0.01
    live = np.isfinite(c).sum(axis=1)
    above = (c > 1_000.0).sum(axis=1)
    assert (above <= 0.01 * live).all()  # at most a handful on any session ...
    assert above[-1] >= 1  # ... and a handful there is


def test_one_year_returns_stay_in_the_range_of_us_listings(
        default_market: tuple[np.ndarray, np.ndarray]) -> None:
    """On raw closes: a reverse split shows as a 5-20x jump, a forward split as a fall."""
    closes, bankrupt = default_market
    ret_all = closes[252:] / closes[:-252] - 1.0  # every 252-session window
    # Only a bankruptcy loses more than 99.5 % in a year.
    assert np.nanmin(ret_all[:, ~bankrupt]) >= -0.995
    assert np.nanmin(ret_all[:, bankrupt]) >= -0.9995
    ret = ret_all[np.isfinite(ret_all)]
    assert len(ret) > 1_000_000
    assert ret.max() <= 50.0  # +5,000 %
    assert (ret > 10.0).mean() <= 0.0005  # above +1,000 %: rare
    assert np.median(ret) > -0.2  # the typical name does not melt away


def test_daily_moves_mostly_within_50_percent(default_closes: np.ndarray) -> None:
    move = default_closes[1:] / default_closes[:-1] - 1.0
    move = move[np.isfinite(move)]
    assert (np.abs(move) > 0.5).mean() <= 0.0005


def test_no_price_is_pinned(default_closes: np.ndarray) -> None:
    """A clipped price shows as a name repeating one close session after session, or coming back
    to exactly its extreme close again and again. (Halted names have no bars, so no repeats; a
    SPAC moving by cents around $10 revisits its extremes, so only names whose range spans more
    than half their low count there; a name moving by a few ticks a day near its low may touch
    it four times.)"""
    c = default_closes
    longest = np.zeros(c.shape[1], dtype=int)
    run = np.zeros(c.shape[1], dtype=int)
    prev = c[0]
    for row in c[1:]:
        have = np.isfinite(row)
        same = have & (row == prev)
        run = np.where(same, run + 1, np.where(have, 0, run))
        longest = np.maximum(longest, run)
        prev = np.where(have, row, prev)
    assert longest.max() < 10  # never more than ten equal closes in a row
    hi, lo = np.nanmax(c, axis=0), np.nanmin(c, axis=0)
    wide = hi > 1.5 * lo
    assert wide.sum() > 1000
    assert (c == hi)[:, wide].sum(axis=0).max() <= 4
    assert (c == lo)[:, wide].sum(axis=0).max() <= 4
