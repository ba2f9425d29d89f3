"""NYSE sessions: holidays, weekends, early closes, and the 'latest completed session' rule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from technic_v4.data import calendar

NY = ZoneInfo("America/New_York")
D = dt.date


def ny(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=NY)


# -- sessions_between --------------------------------------------------------------------------


def test_sessions_2025_count_and_type() -> None:
    s = calendar.sessions_between(D(2025, 1, 1), D(2025, 12, 31))
    assert s.dtype == np.dtype("datetime64[D]")
    assert len(s) == 250
    assert (np.diff(s.astype(np.int64)) > 0).all()  # strictly increasing, no duplicates
    assert s[0] == np.datetime64("2025-01-02")
    assert s[-1] == np.datetime64("2025-12-31")


def test_sessions_exclude_weekends() -> None:
    s = calendar.sessions_between(D(2024, 1, 1), D(2026, 12, 31))
    weekday = (s.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday -> Monday == 0
    assert set(weekday.tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("holiday", [
    D(2025, 1, 1),  # New Year's Day
    D(2025, 1, 9),  # National Day of Mourning (President Carter)
    D(2025, 1, 20),  # MLK Day
    D(2025, 4, 18),  # Good Friday
    D(2025, 5, 26),  # Memorial Day
    D(2025, 6, 19),  # Juneteenth
    D(2025, 7, 4),  # Independence Day
    D(2025, 9, 1),  # Labor Day
    D(2025, 11, 27),  # Thanksgiving
    D(2025, 12, 25),  # Christmas
    D(2026, 7, 3),  # Independence Day observed (July 4 is a Saturday)
])
def test_sessions_exclude_holidays(holiday: dt.date) -> None:
    s = calendar.sessions_between(D(2025, 1, 1), D(2026, 12, 31))
    assert np.datetime64(holiday, "D") not in s
    # The weekdays around it are sessions (the holiday is not hidden inside a gap of the data).
    around = calendar.sessions_between(holiday - dt.timedelta(days=7),
                                       holiday + dt.timedelta(days=7))
    assert len(around) >= 8


def test_sessions_between_bounds_inclusive() -> None:
    s = calendar.sessions_between(D(2025, 12, 24), D(2025, 12, 29))
    assert s.tolist() == [D(2025, 12, 24), D(2025, 12, 26), D(2025, 12, 29)]
    assert calendar.sessions_between(D(2025, 12, 24), D(2025, 12, 24)).tolist() == [
        D(2025, 12, 24)]
    assert len(calendar.sessions_between(D(2025, 12, 25), D(2025, 12, 25))) == 0
    assert len(calendar.sessions_between(D(2025, 12, 29), D(2025, 12, 24))) == 0


def test_early_close_days_are_sessions() -> None:
    s = calendar.sessions_between(D(2025, 11, 1), D(2026, 11, 30))
    for day in (D(2025, 11, 28), D(2025, 12, 24), D(2026, 11, 27)):
        assert np.datetime64(day, "D") in s


# -- latest_completed_session ------------------------------------------------------------------


@pytest.mark.parametrize(("now", "expected"), [
    # A regular session day (Tuesday 2025-06-10): the close is 16:00 New York.
    (ny(2025, 6, 10, 9, 0), D(2025, 6, 9)),
    (ny(2025, 6, 10, 15, 59), D(2025, 6, 9)),
    (ny(2025, 6, 10, 16, 0), D(2025, 6, 10)),
    (ny(2025, 6, 10, 23, 59), D(2025, 6, 10)),
    # Monday morning before the close: Friday.
    (ny(2025, 6, 16, 9, 30), D(2025, 6, 13)),
    # Weekend: Friday, whatever the hour.
    (ny(2025, 6, 14, 0, 1), D(2025, 6, 13)),
    (ny(2025, 6, 15, 23, 0), D(2025, 6, 13)),
    # Day after Thanksgiving 2026: early close at 13:00 New York; Thanksgiving is a holiday.
    (ny(2026, 11, 27, 12, 59), D(2026, 11, 25)),
    (ny(2026, 11, 27, 13, 0), D(2026, 11, 27)),
    (ny(2026, 11, 27, 14, 30), D(2026, 11, 27)),
    (ny(2026, 11, 26, 18, 0), D(2026, 11, 25)),
    # Christmas Eve 2025 closes at 13:00; Christmas is a holiday.
    (ny(2025, 12, 24, 13, 30), D(2025, 12, 24)),
    (ny(2025, 12, 25, 17, 0), D(2025, 12, 24)),
    # Good Friday 2025 is a holiday.
    (ny(2025, 4, 18, 17, 0), D(2025, 4, 17)),
])
def test_latest_completed_session_new_york(now: dt.datetime, expected: dt.date) -> None:
    assert calendar.latest_completed_session(now) == expected


def test_latest_completed_session_other_timezones() -> None:
    # 01:00 UTC on Wednesday is 21:00 New York on Tuesday: Tuesday's close has passed.
    assert calendar.latest_completed_session(
        dt.datetime(2025, 6, 11, 1, 0, tzinfo=dt.UTC)) == D(2025, 6, 10)
    # Naive datetimes are UTC: 16:00 EDT == 20:00 UTC.
    assert calendar.latest_completed_session(dt.datetime(2025, 6, 10, 19, 59)) == D(2025, 6, 9)
    assert calendar.latest_completed_session(dt.datetime(2025, 6, 10, 20, 0)) == D(2025, 6, 10)
    # Winter (EST): 16:00 New York == 21:00 UTC.
    assert calendar.latest_completed_session(dt.datetime(2025, 12, 10, 20, 59)) == D(2025, 12, 9)
    assert calendar.latest_completed_session(dt.datetime(2025, 12, 10, 21, 0)) == D(2025, 12, 10)
    tokyo = ZoneInfo("Asia/Tokyo")  # 06:00 Tokyo Thursday == 16:00 New York Wednesday
    assert calendar.latest_completed_session(
        dt.datetime(2025, 12, 11, 5, 59, tzinfo=tokyo)) == D(2025, 12, 9)
    assert calendar.latest_completed_session(
        dt.datetime(2025, 12, 11, 6, 0, tzinfo=tokyo)) == D(2025, 12, 10)


def test_latest_completed_session_default_is_not_in_the_future() -> None:
    got = calendar.latest_completed_session()
    assert isinstance(got, dt.date)
    assert got <= dt.datetime.now(dt.UTC).date()
    assert np.datetime64(got, "D") in calendar.sessions_between(got, got)


# -- session_on_or_before ----------------------------------------------------------------------


@pytest.mark.parametrize(("day", "expected"), [
    (D(2025, 12, 25), D(2025, 12, 24)),  # holiday
    (D(2025, 4, 18), D(2025, 4, 17)),  # Good Friday
    (D(2026, 7, 4), D(2026, 7, 2)),  # Saturday after an observed-holiday Friday
    (D(2025, 6, 15), D(2025, 6, 13)),  # Sunday
    (D(2025, 1, 1), D(2024, 12, 31)),  # New Year's Day -> previous year
    (D(2025, 6, 10), D(2025, 6, 10)),  # a session is its own answer
])
def test_session_on_or_before(day: dt.date, expected: dt.date) -> None:
    got = calendar.session_on_or_before(day)
    assert got == expected
    assert type(got) is dt.date


def test_session_on_or_before_first_supported() -> None:
    assert calendar.session_on_or_before(D(2000, 1, 3)) == D(2000, 1, 3)
    with pytest.raises(ValueError, match="before the first supported session"):
        calendar.session_on_or_before(D(2000, 1, 2))


def test_cache_file_lives_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    from technic_v4.config import settings as settings_mod

    monkeypatch.setenv("TECHNIC_DATA_DIR", str(tmp_path))
    settings_mod.reset_settings()
    calendar._table.cache_clear()
    try:
        sessions = calendar.all_sessions()
        files = list((tmp_path / "calendar").glob("*.npz"))
        assert len(files) == 1 and files[0].name.startswith("XNYS-")
        calendar._table.cache_clear()  # a new process reads the file back: same sessions
        np.testing.assert_array_equal(calendar.all_sessions(), sessions)
    finally:
        calendar._table.cache_clear()
