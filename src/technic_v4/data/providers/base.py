"""The provider interface: raw calls only. Validation happens once, above providers.

A provider returns what the vendor sent (as a :class:`BarBatch`, bad rows included: validation
in ``data/bars.py`` drops and counts them) and raises from the error tree on failure:
``RetryableProviderError`` for transient faults that survived its own bounded retries, and
``ProviderError`` for the rest. It counts every real request it makes, by endpoint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from technic_v4.data.bars import BarBatch

# Reference-data columns every provider returns (one row per listing).
REFERENCE_COLUMNS = ("Symbol", "Name", "Type", "Exchange", "Sector", "Industry",
                     "SharesOutstanding", "ListDate")
# Optional reference columns of providers that know delistings: Delisted, the last session the
# listing traded (NaT while listed), and DelistReason, one of store.DELIST_REASONS.
LISTING_STATUS_COLUMNS = ("Delisted", "DelistReason")
# Columns of ``actions()``: Type "split" (Ratio = new shares per old share: 4-for-1 -> 4.0,
# 1-for-10 -> 0.1; Amount NaN) or "dividend" (Amount = cash per share as paid on ExDate, in that
# day's share basis; Ratio NaN). ExDate: the first session the new basis / ex-dividend applies.
ACTION_COLUMNS = ("Symbol", "ExDate", "Type", "Ratio", "Amount")


class Provider(Protocol):
    """A source of reference data, UNADJUSTED daily bars (as traded) and corporate actions."""

    name: str
    # How many sessions MarketData asks for per ``bars_for_sessions`` call. A failed call leaves
    # exactly those sessions missing, so vendors that make one request per session use 1.
    fetch_batch_sessions: int

    @property
    def store_key(self) -> str:
        """Names the local store file: two providers with different data never share a store."""
        ...

    def reference(self) -> pd.DataFrame:
        """Reference data with :data:`REFERENCE_COLUMNS`."""
        ...

    def latest_session(self) -> dt.date:
        """The latest session this provider can serve."""
        ...

    def first_session(self) -> dt.date:
        """The earliest session this provider can serve."""
        ...

    def bars_for_sessions(self, sessions: Sequence[dt.date]) -> BarBatch:
        """Every listing's bars for the given sessions (one grouped request per session)."""
        ...

    def bars_for_symbols(self, symbols: Sequence[str], start: dt.date, end: dt.date
                         ) -> BarBatch:
        """The given symbols' bars in [start, end] (per-ticker requests)."""
        ...

    def actions(self, since: dt.date) -> pd.DataFrame:
        """Splits and cash dividends with ex-date on or after ``since``, :data:`ACTION_COLUMNS`."""
        ...

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests made so far, by endpoint (for honest ``api_calls``)."""
        ...
