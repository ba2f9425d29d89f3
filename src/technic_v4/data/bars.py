"""Long-format daily bars as arrays, and the one place where bars are validated.

A :class:`BarBatch` is what every provider returns: one row per (symbol, session) with adjusted
OHLCV. :func:`validate` drops rows that must never reach the store and counts each reason, so a
bad vendor row is dropped, counted, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume")

# Reasons a row is dropped, in the order they are checked (a row counts under its first reason).
DROP_REASONS = (
    "non_finite",  # NaN or inf in any price or volume
    "non_positive_price",  # price <= 0
    "negative_volume",
    "inconsistent_range",  # high < low, or open/close outside [low, high]
    "duplicate",  # same symbol and session twice in one batch: the last one wins
)


@dataclass
class BarBatch:
    """Bars in long format. ``symbol`` holds ticker strings; dates are ``datetime64[D]``."""

    symbol: np.ndarray
    date: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.symbol)

    def take(self, idx: np.ndarray) -> BarBatch:
        return BarBatch(*(getattr(self, f)[idx] for f in ("symbol", "date", *FIELDS)))

    @classmethod
    def empty(cls) -> BarBatch:
        f = np.empty(0, dtype=np.float64)
        return cls(np.empty(0, dtype=object), np.empty(0, dtype="datetime64[D]"), f, f, f, f, f)

    @classmethod
    def concat(cls, batches: list[BarBatch]) -> BarBatch:
        if not batches:
            return cls.empty()
        return cls(*(np.concatenate([getattr(b, f) for b in batches])
                     for f in ("symbol", "date", *FIELDS)))

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> BarBatch:
        """From a long frame with columns symbol, date, open, high, low, close, volume."""
        return cls(
            df["symbol"].to_numpy(dtype=object),
            df["date"].to_numpy(dtype="datetime64[D]"),
            *(df[f].to_numpy(dtype=np.float64) for f in FIELDS),
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"symbol": self.symbol, "date": self.date,
                             **{f: getattr(self, f) for f in FIELDS}})


@dataclass
class ValidationReport:
    """How many rows came in, how many were kept, and why the others were dropped."""

    rows_in: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    zero_volume_rows: int = 0  # kept (a real no-trade day), but counted

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: ValidationReport) -> None:
        self.rows_in += other.rows_in
        self.rows_kept += other.rows_kept
        self.zero_volume_rows += other.zero_volume_rows
        for k, v in other.dropped.items():
            self.dropped[k] = self.dropped.get(k, 0) + v

    def as_dict(self) -> dict[str, object]:
        return {"rows_in": self.rows_in, "rows_kept": self.rows_kept,
                "rows_dropped": self.rows_dropped, "dropped": dict(self.dropped),
                "zero_volume_rows": self.zero_volume_rows}


def validate(batch: BarBatch) -> tuple[BarBatch, ValidationReport]:
    """Drop invalid rows (counted by reason) and duplicates (last occurrence wins)."""
    rep = ValidationReport(rows_in=len(batch))
    o, h, lo, c, v = (batch.open, batch.high, batch.low, batch.close, batch.volume)
    alive = np.ones(len(batch), dtype=bool)

    def drop(reason: str, bad: np.ndarray) -> None:
        newly = bad & alive
        rep.dropped[reason] += int(newly.sum())
        alive[newly] = False

    with np.errstate(invalid="ignore"):
        drop("non_finite", ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
                             & np.isfinite(v)))
        drop("non_positive_price", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0))
        drop("negative_volume", v < 0)
        drop("inconsistent_range", (h < lo) | (o > h) | (o < lo) | (c > h) | (c < lo))
    if alive.any():
        idx = np.flatnonzero(alive)
        codes, _ = pd.factorize(batch.symbol[idx])
        day = batch.date[idx].astype(np.int64)
        key = codes.astype(np.int64) * (int(day.max() - day.min()) + 1) + (day - day.min())
        # Last occurrence wins: look for first occurrences in the reversed keys.
        _, first_rev = np.unique(key[::-1], return_index=True)
        if len(first_rev) < len(key):
            keep = np.zeros(len(key), dtype=bool)
            keep[len(key) - 1 - first_rev] = True
            bad = np.zeros(len(batch), dtype=bool)
            bad[idx[~keep]] = True
            drop("duplicate", bad)
    kept = batch.take(np.flatnonzero(alive))
    rep.rows_kept = len(kept)
    rep.zero_volume_rows = int((kept.volume == 0).sum())
    return kept, rep
