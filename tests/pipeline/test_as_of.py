"""Point in time without crashes: as-of inside the stored range, after it, and on failed sessions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.errors import ConfigError
from technic_v4.history import scan_history
from technic_v4.pipeline import scan
from technic_v4.testing import END, EPOCH, N_SMALL, FaultyProvider, make_market

SLID_TO = dt.date(2026, 3, 2)  # the provider's first session today; the store keeps older bars


class SlidingProvider(SyntheticProvider):
    """A vendor whose history window slides forward (Polygon's ``history_days``): its first
    session is later than the first session a store filled earlier keeps."""

    def first_session(self) -> dt.date:
        return SLID_TO


def test_as_of_before_the_providers_first_session_scans_the_stored_bars(
        small_market: MarketData, tmp_path: Path) -> None:
    prov = SlidingProvider(n_listings=N_SMALL, seed=7, epoch=EPOCH, end=END)
    md = MarketData(settings=small_market.settings, provider=prov, store=small_market.store)
    as_of = dt.date(2026, 1, 15)
    assert as_of < prov.first_session()
    assert md.ensure_current().sessions_fetched == []
    past = scan(ScanConfig(as_of_date=as_of, top_n=30), md)
    then = make_market(tmp_path, end=as_of)
    then.ensure_current()
    try:
        fresh = scan(ScanConfig(top_n=30), then)
    finally:
        then.store.close()
    assert past.stats["as_of"] == str(as_of)
    assert len(past.frame) == 30
    pd.testing.assert_frame_equal(past.frame, fresh.frame)
    hist = scan_history(ScanConfig(top_n=30), [as_of, END], data=md)
    got = hist[hist["AsOf"] == pd.Timestamp(as_of)].drop(columns="AsOf").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, fresh.frame, check_dtype=False)


def test_as_of_after_the_latest_session_names_it(small_market: MarketData) -> None:
    with pytest.raises(ConfigError, match=f"after the latest stored session {END}") as e:
        scan(ScanConfig(as_of_date=dt.date(2030, 1, 2)), small_market)
    assert e.value.field == "as_of_date"
    # A weekend right after the latest session means that session.
    res = scan(ScanConfig(as_of_date=dt.date(2026, 11, 22), top_n=5), small_market)
    assert res.stats["as_of"] == str(END)


FAILED = dt.date(2026, 10, 14)


def test_a_failed_session_is_never_the_as_of(tmp_path: Path) -> None:
    prov = FaultyProvider({}, fail_sessions=[FAILED, END], n_listings=120, seed=7,
                          epoch=dt.date(2026, 1, 2), end=END)
    md = make_market(tmp_path, n=120, epoch=dt.date(2026, 1, 2), provider=prov)
    try:
        res = scan(ScanConfig(as_of_date=FAILED, top_n=10), md)
        before = dt.date(2026, 10, 13)
        assert res.stats["as_of"] == str(before)
        assert res.stats["as_of_requested"] == str(FAILED)
        assert f"session {FAILED} could not be fetched" in res.message
        assert f"used {before}" in res.message
        # The newest session failed too: asking for it says so instead of raising.
        res = scan(ScanConfig(as_of_date=END, top_n=10), md)
        assert res.stats["as_of"] == "2026-11-19"
        assert f"session {END} could not be fetched" in res.message
    finally:
        md.close()
