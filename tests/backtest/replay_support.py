"""A small market for the replay tests: ``pit_support``'s market with splits (forward and
reverse) inside the replayed range, dividends and a delisting, and the per-session reference
(one ``scan`` as of each session with ``lookback_days=None``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))

from pit_support import PitMarket, build

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan

FIRST = dt.date(2024, 10, 1)
LAST = dt.date(2026, 3, 31)
START = dt.date(2026, 1, 2)  # the replayed range: splits, a dividend and a delisting inside
END = LAST
FWD, REV, GONE, PAYER = "S000", "S001", "S002", "S003"

MARKET = PitMarket(
    n=120, seed=5, first=FIRST, last=LAST,
    splits={FWD: [(dt.date(2026, 1, 15), 3.0)], REV: [(dt.date(2026, 2, 17), 0.2)],
            "S010": [(dt.date(2025, 12, 10), 2.0), (dt.date(2026, 3, 2), 2.0)],
            "SPY": [(dt.date(2026, 2, 2), 2.0)]},  # the regime's benchmark splits too
    dividends={PAYER: [(dt.date(2026, 1, 5), 0.5)]},
    delist={GONE: (dt.date(2026, 1, 20), "bankrupt")},
    crash_from={GONE: dt.date(2025, 11, 1)},
    start_price={REV: 30.0},
)

# A where of three clauses plus a preset, reading scan columns, history and the reference.
CONFIG = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0,
                    where="close > sma(close, 50) and RSI14 > 45 and highest(high, 20) > close * 1.01",
                    preset="breakout_52w_high_volume", near_miss=1,
                    columns={"Gap": "open / close[1] - 1", "Dist": "close / SMA200 - 1"})


def build_market(path: Path, end: dt.date = LAST) -> MarketData:
    return build(path, MARKET, end)


def per_session(md: MarketData, config: ScanConfig, days: list[dt.date]) -> pd.DataFrame:
    """One scan as of each session (lookback_days=None), AsOf first."""
    frames = []
    cfg = config.model_copy(update={"lookback_days": None})
    for d in days:
        f = scan(cfg.model_copy(update={"as_of_date": d}), md, max_workers=1).frame
        frames.append(f.assign(AsOf=pd.Timestamp(d)))
    out = pd.concat(frames, ignore_index=True)
    return out[["AsOf", *[c for c in out.columns if c != "AsOf"]]]


def sessions(md: MarketData, start: dt.date, end: dt.date) -> list[dt.date]:
    s = md.store.stored_sessions()
    s = s[(s >= np.datetime64(start, "D")) & (s <= np.datetime64(end, "D"))]
    return [d.astype(dt.date) for d in s]
