"""Weekly and monthly bars built from a daily panel, per row, vectorised (no loop over rows).

A period is an ISO week (Monday to Sunday; sessions fall Monday to Friday) or a calendar month,
read from each bar's session date in ``bars.day``. A period's bar has the open of its first
session, the highest high and lowest low, the close of its last session and the summed volume;
its ``day`` is the date of its last session. Periods without a session (a week-long halt) have
no bar: like the daily panel, a row holds only bars that exist. The current, unfinished week or
month is the latest bar (its values so far), so ``weekly(close)`` equals the daily close.

Output orientation is the daily panel's: (N, W) right-aligned, W the most periods any row has,
NaN / ``day == -1`` padding on the left. Daily rows contain no NaN after their first bar (the
loader guarantees it); a NaN inside a period would make that period's high/low/volume NaN.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from technic_v4.terms.kernels import Bars

Timeframe = Literal["weekly", "monthly"]

# 1970-01-01 (day 0) was a Thursday: shifting by 3 days makes Monday the first day of week 0.
_MONDAY_SHIFT = 3


def period_id(day: np.ndarray, timeframe: Timeframe) -> np.ndarray:
    """The period (week or month number) of each session date ``day`` (days since 1970)."""
    d = day.astype(np.int64)
    if timeframe == "weekly":
        return (d + _MONDAY_SHIFT) // 7
    if timeframe == "monthly":
        return d.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    raise ValueError(f"timeframe must be 'weekly' or 'monthly', got {timeframe!r}")


def resample(bars: Bars, timeframe: Timeframe) -> Bars:
    """``bars`` resampled to weekly or monthly bars per row (see the module docstring)."""
    day = bars.day
    n = day.shape[0]
    valid = day >= 0
    pid = period_id(day, timeframe)
    # A period starts at a row's first real bar or where the period number changes.
    start = valid.copy()
    start[:, 1:] &= ~valid[:, :-1] | (pid[:, 1:] != pid[:, :-1])
    per_row = start.sum(axis=1)
    out_width = max(int(per_row.max(initial=0)), 1)
    out = {f: np.full((n, out_width), np.nan) for f in ("open", "high", "low", "close", "volume")}
    out_day = np.full((n, out_width), -1, dtype=np.int32)
    pos = np.flatnonzero(valid.ravel())  # real bars, row by row, oldest first
    if len(pos):
        first = np.flatnonzero(start.ravel()[pos])  # index into `pos` of each period's first bar
        last = np.append(first[1:], len(pos)) - 1
        rows = np.repeat(np.arange(n), per_row)
        k = np.arange(len(first)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        cols = out_width - per_row[rows] + k
        flat = {f: getattr(bars, f).ravel()[pos] for f in out}
        out["open"][rows, cols] = flat["open"][first]
        out["high"][rows, cols] = np.maximum.reduceat(flat["high"], first)
        out["low"][rows, cols] = np.minimum.reduceat(flat["low"], first)
        out["close"][rows, cols] = flat["close"][last]
        out["volume"][rows, cols] = np.add.reduceat(flat["volume"], first)
        out_day[rows, cols] = day.ravel()[pos][last]
    return Bars(day=out_day, **out)
