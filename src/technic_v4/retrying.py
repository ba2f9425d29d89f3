"""Retry helpers shared by every HTTP client of technic (the vendor client, the alert senders):
tenacity does the retrying; these add what both need on top of it."""

from __future__ import annotations

import datetime as dt
import email.utils

import tenacity
from tenacity.wait import wait_base


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


class RetryAfterBackoff(wait_base):
    """Exponential backoff with jitter, never shorter than the server's Retry-After (capped at
    ``retry_after_cap``): the failed attempt's exception carries it as ``retry_after``."""

    def __init__(self, base: float, maximum: float, retry_after_cap: float) -> None:
        self._exp = (tenacity.wait_exponential(multiplier=base, max=maximum)
                     + tenacity.wait_random(0, base))
        self._cap = retry_after_cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait_s = float(self._exp(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            wait_s = max(wait_s, min(float(after), self._cap))
        return wait_s
