"""The embedded market as traded: splits, dividends and delistings, checked against the bars.

The adjustment formulas are re-derived here from the contract (split factor of a bar dated t
as of B: the product of the ratios of the listing's splits with t < ExDate <= B; total return
further multiplies by (1 - Amount / C) per dividend, C the last raw close before its ex-date in
the ex-date's share basis), independently of ``data/adjust.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from technic_v4.data.bars import BarBatch, validate
from technic_v4.data.providers.base import ACTION_COLUMNS, LISTING_STATUS_COLUMNS, REFERENCE_COLUMNS
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.testing import END

EPOCH = dt.date(2018, 1, 2)  # ~9 years: every kind of action happens in a small market
CUT = dt.date(2024, 6, 28)  # the end of the same market, shorter


@dataclass
class Market:
    p: SyntheticProvider
    ref: pd.DataFrame
    acts: pd.DataFrame
    names: pd.Index  # column order of the matrices
    close: np.ndarray  # (session, listing) validated raw closes, NaN where no bar
    open: np.ndarray
    volume: np.ndarray

    def col(self, symbol: str) -> int:
        return int(self.names.get_loc(symbol))

    def row(self, day: object) -> int:
        return int(np.searchsorted(self.p.sessions, np.datetime64(day, "D")))


def build(n: int = 600, seed: int = 5, epoch: dt.date = EPOCH, end: dt.date = END) -> Market:
    p = SyntheticProvider(n_listings=n, seed=seed, epoch=epoch, end=end)
    kept, _ = validate(p.bars_for_sessions([d.astype(dt.date) for d in p.sessions]))
    ref = p.reference()
    names = pd.Index(ref["Symbol"])
    r, c = np.searchsorted(p.sessions, kept.date), names.get_indexer(kept.symbol)
    mats = []
    for field in (kept.close, kept.open, kept.volume):
        m = np.full((len(p.sessions), len(names)), np.nan)
        m[r, c] = field
        mats.append(m)
    return Market(p, ref, p.actions(epoch), names, *mats)


@pytest.fixture(scope="module")
def mk() -> Market:
    return build()


def split_factor(mk: Market) -> np.ndarray:
    """F(t) as of the latest session, per (session, listing)."""
    f = np.ones_like(mk.close)
    for s in mk.acts[mk.acts["Type"] == "split"].itertuples():
        f[:mk.row(s.ExDate), mk.col(s.Symbol)] *= s.Ratio
    return f


def last_bar_before(mk: Market, e: int, j: int) -> int:
    have = np.flatnonzero(np.isfinite(mk.close[:e, j]))
    return int(have[-1])


# -- what happens ------------------------------------------------------------------------------


def test_every_kind_of_action_and_delisting_happens(mk: Market) -> None:
    acts = mk.acts
    assert tuple(acts.columns) == ACTION_COLUMNS
    splits, divs = acts[acts["Type"] == "split"], acts[acts["Type"] == "dividend"]
    assert len(splits) + len(divs) == len(acts)
    assert set(splits["Ratio"]) <= {1.5, 2.0, 3.0, 4.0, 0.2, 0.1, 0.05}
    assert {2.0, 3.0, 4.0} <= set(splits["Ratio"])  # forward
    assert (splits["Ratio"] < 1).sum() >= 3  # reverse
    assert splits["Amount"].isna().all() and divs["Ratio"].isna().all()
    assert (divs["Amount"] >= 0.01).all()
    np.testing.assert_array_equal(divs["Amount"], divs["Amount"].round(2))  # cents
    # Every ex-date is a session and every symbol a listing.
    assert np.isin(acts["ExDate"].to_numpy("datetime64[D]"), mk.p.sessions).all()
    assert set(acts["Symbol"]) <= set(mk.ref["Symbol"])
    assert set(mk.ref["DelistReason"].dropna()) == {"acquired", "bankrupt", "other"}
    assert not hasattr(mk.p, "splits")  # actions() replaced it


def test_frequencies_are_those_of_us_listings(mk: Market) -> None:
    years = len(mk.p.sessions) / 252
    n = len(mk.ref)
    splits = mk.acts[mk.acts["Type"] == "split"]
    fwd = (splits["Ratio"] > 1).sum() / years / n
    assert 0.005 <= fwd <= 0.06  # a few % a year
    assert (splits["Ratio"] < 1).sum() < (splits["Ratio"] > 1).sum()
    delisted = mk.ref["Delisted"].notna().sum() / years / n
    assert 0.008 <= delisted <= 0.035  # ~1-3 % a year
    divs = mk.acts[mk.acts["Type"] == "dividend"]
    stocks = mk.ref.loc[mk.ref["Type"] == "Common Stock", "Symbol"]
    payers = set(divs["Symbol"])
    assert 0.2 <= len(payers & set(stocks)) / len(stocks) <= 0.6
    # Quarterly: about 4 a year per payer while it pays (the median payer).
    per_payer = divs.groupby("Symbol")["ExDate"].agg(["count", "min", "max"])
    span = (per_payer["max"] - per_payer["min"]).dt.days / 365.25
    long = per_payer[span > 2]
    rate = (long["count"] - 1) / span[span > 2]
    assert 3.7 <= rate.median() <= 4.1


# -- splits ------------------------------------------------------------------------------------


def test_raw_prices_jump_at_a_split_and_the_adjusted_series_does_not(mk: Market) -> None:
    f = split_factor(mk)
    adj = mk.close / f
    raw_ret = np.log(mk.close[1:] / mk.close[:-1])
    adj_ret = np.log(adj[1:] / adj[:-1])
    typical = np.nanmedian(np.abs(adj_ret))
    at_split = []
    for s in mk.acts[mk.acts["Type"] == "split"].itertuples():
        e, j = mk.row(s.ExDate), mk.col(s.Symbol)
        b = last_bar_before(mk, e, j)
        if not np.isfinite(mk.close[e, j]):
            continue
        jump = np.log(mk.close[e, j] / mk.close[b, j])
        gap = np.log(mk.open[e, j] / mk.close[b, j])
        # The raw series moves by 1/ratio at the ex-date open (give or take a day's move) ...
        assert abs(gap + np.log(s.Ratio)) < 0.3, (s.Symbol, s.ExDate, s.Ratio, gap)
        assert abs(jump + np.log(s.Ratio)) < 0.45, (s.Symbol, s.ExDate, s.Ratio, jump)
        at_split.append(np.log(adj[e, j] / adj[b, j]))
    at_split_a = np.abs(np.array(at_split))
    assert len(at_split_a) >= 20
    # ... while the split-adjusted series moves like on any other day.
    assert np.median(at_split_a) < 3 * typical
    assert at_split_a.max() < 0.45
    assert np.nanmax(np.abs(adj_ret)) < np.nanmax(np.abs(raw_ret))


def test_volume_moves_inversely_at_a_split(mk: Market) -> None:
    out = []
    for s in mk.acts[mk.acts["Type"] == "split"].itertuples():
        e, j = mk.row(s.ExDate), mk.col(s.Symbol)
        before, after = mk.volume[max(e - 20, 0):e, j], mk.volume[e:e + 20, j]
        before, after = before[before > 0], after[after > 0]
        if len(before) >= 10 and len(after) >= 10:
            out.append(np.log(np.median(after) / np.median(before)) - np.log(s.Ratio))
    assert len(out) >= 20
    assert abs(np.median(out)) < 0.3


@pytest.fixture(scope="module")
def short(mk: Market) -> SyntheticProvider:
    """The market of ``mk`` ending earlier."""
    return SyntheticProvider(n_listings=600, seed=5, epoch=EPOCH, end=CUT)


def test_shares_outstanding_are_as_of_the_latest_session(mk: Market,
                                                         short: SyntheticProvider) -> None:
    rs, rl = short.reference().set_index("Symbol"), mk.ref.set_index("Symbol")
    acts = mk.p.actions(CUT + dt.timedelta(days=1))
    ratio = acts[acts["Type"] == "split"].groupby("Symbol")["Ratio"].prod()
    want = rs["SharesOutstanding"] * ratio.reindex(rs.index).fillna(1.0)
    np.testing.assert_allclose(rl.loc[rs.index, "SharesOutstanding"], want, rtol=1e-9)
    assert len(ratio) >= 5


# -- dividends and total return ----------------------------------------------------------------


def test_dividends_drop_the_raw_price_by_the_amount(mk: Market) -> None:
    raw, expected = [], []
    splits = mk.acts[mk.acts["Type"] == "split"]
    same_day = splits.set_index(["Symbol", "ExDate"])["Ratio"].to_dict()
    for d in mk.acts[mk.acts["Type"] == "dividend"].itertuples():
        e, j = mk.row(d.ExDate), mk.col(d.Symbol)
        if not np.isfinite(mk.close[e, j]):
            continue
        b = last_bar_before(mk, e, j)
        # The last close in the ex-date's share basis.
        c = mk.close[b, j] / same_day.get((d.Symbol, d.ExDate), 1.0)
        assert 0 < d.Amount / c < 0.03  # a quarter of a 0.5-6 % yield, give or take
        raw.append(np.log(mk.close[e, j] / c))
        expected.append(np.log1p(-d.Amount / c))
    raw_a, exp_a = np.array(raw), np.array(expected)
    assert len(raw_a) > 1000
    resid = raw_a - exp_a  # the day's own move, once the dividend is taken out
    se = resid.std() / np.sqrt(len(resid))
    assert abs(resid.mean()) < 4 * se
    assert raw_a.mean() < exp_a.mean() / 2 < 0  # the drop is there, and it is the amount


def test_total_return_series_is_continuous_at_ex_dates(mk: Market) -> None:
    f = split_factor(mk)
    tr = np.ones_like(mk.close)
    for d in mk.acts[mk.acts["Type"] == "dividend"].itertuples():
        e, j = mk.row(d.ExDate), mk.col(d.Symbol)
        b = last_bar_before(mk, e, j)
        c = mk.close[b, j] * f[b, j] / f[e, j]  # in the ex-date's basis
        tr[:e, j] *= 1.0 - d.Amount / c
    price = mk.close / f
    total = price * tr
    ret_p = np.log(price[1:] / price[:-1])
    ret_t = np.log(total[1:] / total[:-1])
    ex = np.zeros_like(mk.close, dtype=bool)
    for d in mk.acts[mk.acts["Type"] == "dividend"].itertuples():
        ex[mk.row(d.ExDate), mk.col(d.Symbol)] = True
    ex = ex[1:] & np.isfinite(ret_t)
    other = ~ex & np.isfinite(ret_t)
    se = ret_t[other].std() / np.sqrt(ex.sum())
    # Total return at ex-dates is an ordinary day; the price return is not.
    assert abs(ret_t[ex].mean() - ret_t[other].mean()) < 4 * se
    assert ret_p[ex].mean() < ret_t[ex].mean() - 4 * se
    # With no action after a bar, every view of it is the raw bar itself.
    last = mk.close[-1]
    np.testing.assert_array_equal(total[-1][np.isfinite(last)], last[np.isfinite(last)])


# -- delistings --------------------------------------------------------------------------------


def test_reference_keeps_every_listing_with_its_delisting(mk: Market) -> None:
    ref = mk.ref
    assert tuple(ref.columns) == REFERENCE_COLUMNS + LISTING_STATUS_COLUMNS
    gone = ref["Delisted"].notna()
    assert gone.sum() >= 30
    assert (ref["DelistReason"].notna() == gone).all()
    assert (ref.loc[gone, "Delisted"] <= pd.Timestamp(END)).all()
    assert (ref.loc[gone, "Delisted"] >= ref.loc[gone, "ListDate"]).all()
    # Delisted is the last session with a bar: one on it, none after it.
    has = np.isfinite(mk.close)
    for s in ref[gone].itertuples():
        j, e = mk.col(s.Symbol), mk.row(s.Delisted)
        assert mk.p.sessions[e] == np.datetime64(s.Delisted, "D")
        assert has[e, j], s.Symbol
        assert not has[e + 1:, j].any(), s.Symbol
    # Listings still listed have a bar in the last week.
    assert has[-5:, mk.names.get_indexer(ref.loc[~gone, "Symbol"])].any(axis=0).mean() > 0.99


def test_acquisitions_jump_to_a_premium_and_stay_pinned(mk: Market) -> None:
    acq = mk.ref[mk.ref["DelistReason"] == "acquired"]
    assert len(acq) >= 10
    jumps, spreads = [], []
    for s in acq.itertuples():
        j, e = mk.col(s.Symbol), mk.row(s.Delisted)
        c = mk.close[max(e - 90, 0):e + 1, j]
        c = c[np.isfinite(c)]
        if len(c) < 40:
            continue
        jumps.append(np.nanmax(np.diff(np.log(c))))
        spreads.append(np.log(c[-15:]).std())
    # A 20-45 % jump on the announcement, then within a few % of the offer.
    assert np.median(jumps) > np.log(1.15)
    assert np.median(spreads) < 0.02


def test_bankruptcies_end_near_zero(mk: Market) -> None:
    bk = mk.ref[mk.ref["DelistReason"] == "bankrupt"]
    assert len(bk) >= 5
    for s in bk.itertuples():
        j, e = mk.col(s.Symbol), mk.row(s.Delisted)
        c = mk.close[:e + 1, j]
        c = c[np.isfinite(c)]
        assert c[-1] < 1.0 and c[-1] <= 0.15 * c[-300:].max(), (s.Symbol, c[-1], c[-300:].max())


# -- determinism -------------------------------------------------------------------------------


def test_same_arguments_same_actions_and_reference() -> None:
    a = SyntheticProvider(n_listings=300, seed=9, epoch=dt.date(2024, 1, 2), end=END)
    b = SyntheticProvider(n_listings=300, seed=9, epoch=dt.date(2024, 1, 2), end=END)
    assert len(a.actions(EPOCH)) > 100
    pd.testing.assert_frame_equal(a.actions(EPOCH), b.actions(EPOCH))
    pd.testing.assert_frame_equal(a.reference(), b.reference())


def test_a_later_end_never_changes_earlier_actions_or_delistings(
        mk: Market, short: SyntheticProvider) -> None:
    cut, longer = CUT, mk.p
    la = longer.actions(EPOCH)
    pd.testing.assert_frame_equal(short.actions(EPOCH),
                                  la[la["ExDate"] <= pd.Timestamp(cut)].reset_index(drop=True))
    rs, rl = short.reference().set_index("Symbol"), longer.reference().set_index("Symbol")
    rl = rl.loc[rs.index]
    was = rs["Delisted"].notna()
    pd.testing.assert_series_equal(rs.loc[was, "Delisted"], rl.loc[was, "Delisted"])
    pd.testing.assert_series_equal(rs.loc[was, "DelistReason"], rl.loc[was, "DelistReason"])
    # Listed at the cut: either still listed or delisted after it.
    later = rl.loc[~was, "Delisted"]
    assert (later.isna() | (later > pd.Timestamp(cut))).all()
    assert (later > pd.Timestamp(cut)).sum() >= 3


def test_actions_since_filters_by_ex_date(mk: Market) -> None:
    since = dt.date(2023, 3, 15)
    got = mk.p.actions(since)
    want = mk.acts[mk.acts["ExDate"] >= pd.Timestamp(since)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert got["ExDate"].min() >= pd.Timestamp(since)
    assert len(got) < len(mk.acts)
    empty = mk.p.actions(END + dt.timedelta(days=1))
    assert tuple(empty.columns) == ACTION_COLUMNS and len(empty) == 0


def test_bars_do_not_depend_on_the_order_of_requests() -> None:
    """A walk resumed from a saved state equals one from the epoch (the fill asks for the
    reference first, then the bars in chunks; a server asks in any order)."""
    a = SyntheticProvider(n_listings=150, seed=4, epoch=EPOCH, end=END)
    b = SyntheticProvider(n_listings=150, seed=4, epoch=EPOCH, end=END)
    days = [d.astype(dt.date) for d in a.sessions]
    full = a.bars_for_sessions(days)
    b.reference()  # walks to the end first
    parts = [b.bars_for_sessions(days[i:i + 300]) for i in range(len(days) - 300, -1, -300)]
    parts.append(b.bars_for_sessions(days[:len(days) % 300]))
    got = BarBatch.concat(parts)
    order = np.lexsort((got.symbol.astype(str), got.date))
    want = np.lexsort((full.symbol.astype(str), full.date))
    for f in ("symbol", "date", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(got, f)[order], getattr(full, f)[want], err_msg=f)
    # As the fetch planner asks: reference data first, then the bars in date order (served
    # from what the reference walk kept).
    c = SyntheticProvider(n_listings=150, seed=4, epoch=EPOCH, end=END)
    c.reference()
    in_order = BarBatch.concat([c.bars_for_sessions(days[i:i + 64])
                                for i in range(0, len(days), 64)])
    for f in ("symbol", "date", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(in_order, f), getattr(full, f), err_msg=f)
    sym = ["SPY", *a.reference()["Symbol"][5:9]]
    one = b.bars_for_symbols(sym, EPOCH, END)
    sub = np.isin(full.symbol, sym)
    np.testing.assert_array_equal(np.sort(one.close[np.isfinite(one.close)]),
                                  np.sort(full.close[sub][np.isfinite(full.close[sub])]))
