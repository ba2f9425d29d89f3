"""The default-size market: the predecessor's silent shrinking of the universe must not recur."""

from __future__ import annotations

import pandas as pd

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.universe import gics


def test_full_universe_scan_keeps_every_sector(full_market: MarketData) -> None:
    res = scan(ScanConfig(max_symbols=6000), full_market)
    st = {s["stage"]: s for s in res.stats["stages"]}
    ref = full_market.reference()
    listed = ref[~(ref["Delisted"] < pd.Timestamp(full_market.resolve_as_of(None)))]
    stocks = listed[listed["Type"].isin(gics.DEFAULT_TYPES)]
    assert st["smart_filter"]["out"] == len(stocks) > 4000
    # Only the documented reasons drop listings, each counted.
    assert set(st["smart_filter"]["dropped"]) <= {f"type {t}" for t in gics.TYPES} | {
        "delisted before as-of"}
    assert set(res.frame["Sector"]) == set(gics.SECTORS)
    assert len(res.frame) > 3000
    per_sector = res.frame["Sector"].value_counts()
    assert per_sector.min() >= 50, per_sector


def test_multi_sector_selection(full_market: MarketData) -> None:
    pick = ["Information Technology", "Health Care", "Financials"]
    res = scan(ScanConfig(sectors=pick), full_market)
    assert set(res.frame["Sector"]) == set(pick)
    everything = scan(ScanConfig(), full_market).frame
    want = everything[everything["Sector"].isin(pick)]
    # Same rows as the full scan restricted to those sectors (RSRating is per scanned universe).
    assert set(res.frame["Symbol"]) == set(want["Symbol"])


def test_5000_listings_scan_has_rows_from_every_sector(full_market: MarketData) -> None:
    res = scan(ScanConfig(max_symbols=5000, types=gics.TYPES), full_market)
    st = {s["stage"]: s for s in res.stats["stages"]}
    assert st["max_symbols"]["out"] == 5000
    sectors = set(res.frame["Sector"].dropna())
    assert sectors == set(gics.SECTORS)
    assert pd.api.types.is_float_dtype(res.frame["TechRating"])
