"""The provider interface: raw calls only. Validation happens once, above providers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from technic_v4.data.bars import BarBatch

# Reference-data columns every provider returns (one row per listing).
REFERENCE_COLUMNS = ("Symbol", "Name", "Type", "Exchange", "Sector", "Industry",
                     "SharesOutstanding", "ListDate")


class Provider(Protocol):
    """A source of reference data and adjusted daily bars."""

    name: str

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

    @property
    def request_counts(self) -> dict[str, int]:
        """Requests made so far, by endpoint (for honest ``api_calls``)."""
        ...
