"""A small market with corporate actions and delistings, for the point-in-time tests.

``PitMarket`` holds an economic price path per listing (random walks, a few steered: names
that drift to bankruptcy, names that split or pay dividends) and derives what a vendor serves
from it: bars as traded (before a split, prices x its ratio and volume / it), the actions, the
reference with delistings. ``build`` writes a store through the Store API as it looked at a
date, optionally the way technic stored bars before issue 10 (split-adjusted, no actions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from technic_v4.config.settings import Settings
from technic_v4.data import calendar
from technic_v4.data.bars import BarBatch, ValidationReport
from technic_v4.data.market import MarketData
from technic_v4.data.providers.base import ACTION_COLUMNS
from technic_v4.data.store import Store

FIRST = dt.date(2025, 1, 2)
LAST = dt.date(2026, 8, 3)


@dataclass
class PitMarket:
    """Listings ``S000``.. plus SPY over the sessions FIRST..LAST (see module docstring)."""

    n: int = 30
    seed: int = 11
    splits: dict[str, list[tuple[dt.date, float]]] = field(default_factory=dict)
    dividends: dict[str, list[tuple[dt.date, float]]] = field(default_factory=dict)
    # symbol -> (last session traded, reason); "bankrupt" names drift toward zero before it
    delist: dict[str, tuple[dt.date, str]] = field(default_factory=dict)
    start_price: dict[str, float] = field(default_factory=dict)
    drift: dict[str, float] = field(default_factory=dict)  # daily log drift
    crash_from: dict[str, dt.date] = field(default_factory=dict)  # then -3% a day
    first: dt.date = FIRST
    last: dt.date = LAST

    def __post_init__(self) -> None:
        self.sessions = calendar.sessions_between(self.first, self.last)
        self.symbols = ["SPY", *(f"S{i:03d}" for i in range(self.n))]
        rng = np.random.default_rng(self.seed)
        t = len(self.sessions)
        rows = []
        for sym in self.symbols:
            mu = self.drift.get(sym, 0.0003)
            r = rng.normal(mu, 0.015, t)
            if sym in self.crash_from:
                r[self.sessions >= np.datetime64(self.crash_from[sym], "D")] -= 0.03 + mu
            close = self.start_price.get(sym, float(rng.uniform(20, 80))) * np.exp(np.cumsum(r))
            opn = close * np.exp(rng.normal(0, 0.004, t))
            high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.01, t))
            low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.01, t))
            vol = np.round(rng.uniform(2e5, 2e6, t))
            keep = np.ones(t, dtype=bool)
            if sym in self.delist:
                keep = self.sessions <= np.datetime64(self.delist[sym][0], "D")
            rows.append(pd.DataFrame({"symbol": sym, "date": self.sessions[keep],
                                      "open": opn[keep], "high": high[keep], "low": low[keep],
                                      "close": close[keep], "volume": vol[keep]}))
        self.econ = pd.concat(rows, ignore_index=True)  # prices in today's share basis
        # As traded: before each split a share was worth ratio of today's shares.
        raw = self.econ.copy()
        for sym, events in self.splits.items():
            for day, ratio in events:
                before = ((raw["symbol"] == sym) & (raw["date"] < np.datetime64(day, "D"))
                          ).to_numpy()
                for f in ("open", "high", "low", "close"):
                    raw.loc[before, f] = raw.loc[before, f] * ratio
                raw.loc[before, "volume"] = raw.loc[before, "volume"] / ratio
        self.raw = raw

    def actions(self, through: dt.date) -> pd.DataFrame:
        rows = [(s, pd.Timestamp(d), "split", r, np.nan) for s, ev in self.splits.items()
                for d, r in ev if d <= through]
        rows += [(s, pd.Timestamp(d), "dividend", np.nan, a) for s, ev in self.dividends.items()
                 for d, a in ev if d <= through]
        return pd.DataFrame(rows, columns=list(ACTION_COLUMNS))

    def reference(self, through: dt.date) -> pd.DataFrame:
        """The reference as known on ``through``: shares outstanding as of that day."""
        shares = []
        for s in self.symbols:
            n = 4e8 if s == "SPY" else 5e8
            for day, ratio in self.splits.get(s, ()):
                if day <= through:
                    n *= ratio
            shares.append(n)
        gone = [self.delist.get(s) for s in self.symbols]
        return pd.DataFrame({
            "Symbol": self.symbols, "Name": [f"{s} Inc" for s in self.symbols],
            "Type": ["ETF" if s == "SPY" else "Common Stock" for s in self.symbols],
            "Exchange": "XNYS", "Sector": "Industrials", "Industry": "Machinery",
            "SharesOutstanding": shares, "ListDate": pd.Timestamp(self.first),
            "Delisted": [pd.Timestamp(g[0]) if g and g[0] <= through else pd.NaT
                         for g in gone],
            "DelistReason": [g[1] if g and g[0] <= through else None for g in gone],
        })

    def bars(self, through: dt.date, adjusted: bool = False) -> pd.DataFrame:
        """Bars up to ``through`` as traded, or (``adjusted``) split-adjusted as of it: the
        pre-issue-10 storage, by a per-bar loop over the splits."""
        b = self.raw[self.raw["date"] <= np.datetime64(through, "D")].copy()
        if adjusted:
            for sym, events in self.splits.items():
                for day, ratio in events:
                    if day > through:
                        continue
                    before = ((b["symbol"] == sym) & (b["date"] < np.datetime64(day, "D"))
                              ).to_numpy()
                    for f in ("open", "high", "low", "close"):
                        b.loc[before, f] = b.loc[before, f] / ratio
                    b.loc[before, "volume"] = b.loc[before, "volume"] * ratio
        return b


class PitVendor:
    """The vendor double serving a :class:`PitMarket` through ``end`` (the provider protocol:
    unadjusted bars, actions, a reference with delistings)."""

    name = "pit-test"
    fetch_batch_sessions = 500

    def __init__(self, market: PitMarket, end: dt.date, key: str, adjusted: bool = False,
                 survivors_only: bool = False) -> None:
        self.market, self.end, self.key = market, end, key
        # adjusted: a vendor serving split-adjusted bars and no actions (the old storage);
        # survivors_only: a reference of active listings only.
        self.adjusted, self.survivors_only = adjusted, survivors_only
        self._requests = {"reference": 0, "grouped_daily": 0, "ticker": 0, "actions": 0}

    @property
    def store_key(self) -> str:
        return self.key

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self._requests)

    def first_session(self) -> dt.date:
        return self.market.first

    def latest_session(self) -> dt.date:
        return self.end

    def reference(self) -> pd.DataFrame:
        self._requests["reference"] += 1
        ref = self.market.reference(self.end)
        if self.survivors_only:
            ref = ref[ref["Delisted"].isna()].reset_index(drop=True)
        return ref

    def _batch(self, b: pd.DataFrame) -> BarBatch:
        return BarBatch(b["symbol"].to_numpy(object), b["date"].to_numpy("datetime64[D]"),
                        *(b[f].to_numpy(np.float64) for f in
                          ("open", "high", "low", "close", "volume")))

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        self._requests["grouped_daily"] += len(sessions)
        b = self.market.bars(self.end, self.adjusted)
        return self._batch(b[b["date"].isin(pd.to_datetime(list(sessions)))])

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        self._requests["ticker"] += len(symbols)
        b = self.market.bars(min(end, self.end), self.adjusted)
        return self._batch(b[b["symbol"].isin(list(symbols))
                             & (b["date"] >= pd.Timestamp(start))])

    def actions(self, since: dt.date) -> pd.DataFrame:
        self._requests["actions"] += 1
        a = self.market.actions(self.end)
        if self.adjusted:
            a = a[:0]
        return a[a["ExDate"] >= pd.Timestamp(since)].reset_index(drop=True)


def build(path: Path, market: PitMarket, end: dt.date, adjusted: bool = False,
          survivors_only: bool = False, **settings: object) -> MarketData:
    """A MarketData over a store written through the Store API as the vendor knew the market
    on ``end``: raw bars and actions (``adjusted``: split-adjusted bars, no actions - how
    technic stored them before) and, with ``survivors_only``, a reference of the listings
    still trading on ``end`` only (what an active-tickers-only vendor lists)."""
    path.mkdir(parents=True, exist_ok=True)
    key = f"pit-{end}-{int(adjusted)}-{int(survivors_only)}"
    store = Store(path / f"{key}.duckdb")
    vendor = PitVendor(market, end, key, adjusted, survivors_only)
    ref = vendor.reference()
    store.upsert_reference(ref)
    b = market.bars(end, adjusted=adjusted)
    b = b[b["symbol"].isin(ref["Symbol"])]
    sessions = market.sessions[market.sessions <= np.datetime64(end, "D")]
    store.append_sessions(vendor._batch(b), sessions,
                          ValidationReport(rows_in=len(b), rows_kept=len(b)))
    if not adjusted:
        acts = market.actions(end)
        if len(acts):
            store.upsert_actions(acts[acts["Symbol"].isin(ref["Symbol"])])
    s = Settings(data_dir=path, progress=False, **settings)  # type: ignore[arg-type]
    return MarketData(settings=s, provider=vendor, store=store)  # type: ignore[arg-type]
