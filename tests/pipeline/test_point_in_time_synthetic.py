"""Point in time on the embedded market itself: its splits, dividends and delistings arrive as
time passes (a later ``end``), and a scan as of D must not notice any of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data import calendar
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.testing import END, make_market
from technic_v4.universe import gics

EPOCH = dt.date(2024, 6, 3)
N = 400


@pytest.fixture(scope="module")
def markets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MarketData,
                                                                        MarketData, dt.date]]:
    root = tmp_path_factory.mktemp("pit-synth")
    today = make_market(root / "today", n=N, epoch=EPOCH, end=END)
    today.ensure_current()
    acts = today.store.actions()
    splits = acts[(acts["Type"] == "split")
                  & (acts["ExDate"] > np.datetime64(EPOCH + dt.timedelta(days=400), "D"))]
    assert len(splits) >= 2, "the embedded market should split a few names in two years"
    ex = pd.Timestamp(splits["ExDate"].iloc[0]).date()
    d = calendar.session_on_or_before(ex - dt.timedelta(days=1))  # the session before a split
    then = make_market(root / "then", n=N, epoch=EPOCH, end=d)
    then.ensure_current()
    yield today, then, d
    today.close()
    then.close()


def _scan(md: MarketData, d: dt.date) -> pd.DataFrame:
    cfg = ScanConfig(as_of_date=d, min_price=0, min_dollar_volume=0, min_market_cap=0,
                     min_history=1, types=gics.TYPES, max_symbols=N)
    f = scan(cfg, md).frame
    return f.sort_values("Symbol").reset_index(drop=True)


def test_later_splits_dividends_and_delistings_change_nothing_as_of_d(
        markets: tuple[MarketData, MarketData, dt.date]) -> None:
    today, then, d = markets
    acts = today.store.actions()
    later = acts[acts["ExDate"] > np.datetime64(d, "D")]
    ref = today.reference()
    gone_later = ref[ref["Delisted"] > pd.Timestamp(d)]
    # What happened after D in the store of today: splits, dividends, delistings.
    assert (later["Type"] == "split").sum() >= 1 and (later["Type"] == "dividend").sum() >= 1
    assert len(gone_later) >= 1
    got, want = _scan(today, d), _scan(then, d)
    split_names = set(later.loc[later["Type"] == "split", "Symbol"])
    assert split_names & set(got["Symbol"])  # a listing that splits later is in the scan at D
    assert set(gone_later["Symbol"]) & set(got["Symbol"])  # so is one delisted later
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_scan_after_the_split_sees_it_adjusted(
        markets: tuple[MarketData, MarketData, dt.date]) -> None:
    today, _, d = markets
    acts = today.store.actions()
    split = acts[(acts["Type"] == "split") & (acts["ExDate"] > np.datetime64(d, "D"))].iloc[0]
    sym, ratio = split["Symbol"], float(split["Ratio"])
    ex = pd.Timestamp(split["ExDate"]).date()
    before = today.symbols_panel(today.reference().index[today.reference()["Symbol"] == sym],
                                 d, 5)
    after_view = today.symbols_panel(
        today.reference().index[today.reference()["Symbol"] == sym], END, len(
            today.store.stored_sessions()))
    on_d = after_view.day[0] == int(np.datetime64(d, "D").astype(np.int64))
    # Today's view of D's close is D's close as traded divided by the split ratio.
    assert before.close[0, -1] / after_view.close[0, on_d][0] == pytest.approx(ratio, rel=1e-12)
    assert ex > d
