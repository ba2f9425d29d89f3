"""NYSE trading sessions, from the maintained ``exchange_calendars`` library.

Lookbacks in technic count sessions, never calendar days (the predecessor's "90 days" gave ~62
bars and an SMA200 that was always NaN).

Building the calendar costs ~0.3 s (holiday rules), so the session list and close times are kept
in a small ``.npz`` file under ``TECHNIC_DATA_DIR`` (``calendar/``), rebuilt once a day or when
the library version changes, and written atomically (``fsio``).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from technic_v4 import fsio

CALENDAR = "XNYS"
_FIRST = "2000-01-03"

log = logging.getLogger(__name__)


def _cache_file() -> Path:
    from importlib.metadata import version

    from technic_v4.config.settings import get_settings

    tag = f"{CALENDAR}-{version('exchange_calendars')}-{dt.date.today():%Y%m%d}"
    return Path(get_settings().data_dir) / "calendar" / f"{tag}.npz"


def _build() -> tuple[np.ndarray, np.ndarray]:
    import exchange_calendars as xc

    # exchange_calendars still uses pandas APIs that pandas 3.1 deprecates (Series.values on
    # tz-aware data); the results are right, the warnings are not ours to act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        cal = xc.get_calendar(CALENDAR, start=_FIRST)
        sessions = np.asarray(cal.sessions.values.astype("datetime64[D]"))
        closes = np.asarray(cal.schedule["close"].dt.tz_convert(None).to_numpy()
                            .astype("datetime64[m]").astype(np.int64))
    return sessions, closes


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray]:
    """(sessions as datetime64[D], session close times as int64 UTC minutes)."""
    path = _cache_file()
    if path.exists():
        with np.load(path) as z:
            return z["sessions"].astype("datetime64[D]"), z["closes"]
    sessions, closes = _build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with fsio.atomic_file(path) as f:
            np.savez(f, sessions=sessions.astype(np.int64), closes=closes)
    except OSError as e:  # a read-only data dir still works, it just rebuilds each time
        log.debug("calendar cache not written to %s: %s", path, e)
    return sessions, closes


def all_sessions() -> np.ndarray:
    return _table()[0]


def sessions_between(start: dt.date, end: dt.date) -> np.ndarray:
    """All NYSE sessions in [start, end] as a sorted ``datetime64[D]`` array."""
    s = all_sessions()
    lo = np.searchsorted(s, np.datetime64(start, "D"), side="left")
    hi = np.searchsorted(s, np.datetime64(end, "D"), side="right")
    return s[lo:hi]


def latest_completed_session(now: dt.datetime | None = None) -> dt.date:
    """The latest session whose close has passed at ``now`` (aware, or naive UTC; default now)."""
    now = now if now is not None else dt.datetime.now(dt.UTC)
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC).replace(tzinfo=None)
    minute = np.datetime64(now, "m").astype(np.int64)
    sessions, closes = _table()
    i = int(np.searchsorted(closes, minute, side="right")) - 1
    if i < 0:
        raise ValueError(f"{now} is before the first supported session {_FIRST}")
    return sessions[i].astype(dt.date)


def session_on_or_before(day: dt.date) -> dt.date:
    """The session at ``day`` if it is one, else the previous session."""
    s = all_sessions()
    i = int(np.searchsorted(s, np.datetime64(day, "D"), side="right")) - 1
    if i < 0:
        raise ValueError(f"{day} is before the first supported session {_FIRST}")
    return s[i].astype(dt.date)


def close_time(session: dt.date) -> dt.datetime:
    """The close of ``session`` (a session: early closes included) as an aware UTC datetime."""
    sessions, closes = _table()
    i = int(np.searchsorted(sessions, np.datetime64(session, "D")))
    if i >= len(sessions) or sessions[i] != np.datetime64(session, "D"):
        raise ValueError(f"{session} is not an NYSE session")
    minute = np.datetime64(int(closes[i]), "m").astype(dt.datetime)
    return minute.replace(tzinfo=dt.UTC)


def next_session(day: dt.date) -> dt.date:
    """The first session after ``day``."""
    s = all_sessions()
    i = int(np.searchsorted(s, np.datetime64(day, "D"), side="right"))
    return s[i].astype(dt.date)
