"""NYSE trading sessions, from the maintained ``exchange_calendars`` library.

Lookbacks in technic count sessions, never calendar days (the predecessor's "90 days" gave ~62
bars and an SMA200 that was always NaN).
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

CALENDAR = "XNYS"
_FIRST = "2000-01-03"


@lru_cache(maxsize=1)
def _calendar() -> Any:
    import exchange_calendars as xc

    # exchange_calendars still uses pandas APIs that pandas 3.1 deprecates (Series.values on
    # tz-aware data); the results are right, the warnings are not ours to act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xc.get_calendar(CALENDAR, start=_FIRST)


@lru_cache(maxsize=1)
def _all_sessions() -> np.ndarray:
    return np.asarray(_calendar().sessions.values.astype("datetime64[D]"))


def sessions_between(start: dt.date, end: dt.date) -> np.ndarray:
    """All NYSE sessions in [start, end] as a sorted ``datetime64[D]`` array."""
    s = _all_sessions()
    lo = np.searchsorted(s, np.datetime64(start, "D"), side="left")
    hi = np.searchsorted(s, np.datetime64(end, "D"), side="right")
    return s[lo:hi]


def latest_completed_session(now: dt.datetime | None = None) -> dt.date:
    """The latest session whose close has passed at ``now`` (aware or UTC; default: now)."""
    cal = _calendar()
    ts = pd.Timestamp(now if now is not None else dt.datetime.now(dt.UTC))
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    day = session_on_or_before(ts.tz_convert("America/New_York").date())
    if ts >= cal.session_close(pd.Timestamp(day)):
        return day
    return session_on_or_before(day - dt.timedelta(days=1))


def session_on_or_before(day: dt.date) -> dt.date:
    """The session at ``day`` if it is one, else the previous session."""
    s = _all_sessions()
    i = int(np.searchsorted(s, np.datetime64(day, "D"), side="right")) - 1
    if i < 0:
        raise ValueError(f"{day} is before the first supported session {_FIRST}")
    return s[i].astype(dt.date)
