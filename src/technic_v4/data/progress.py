"""A long fill as the user sees it: a progress bar on stderr whose ETA knows the vendor's rate
limit, and a prompt stop on Ctrl-C.

The fill calls :func:`fill_progress` for its bar and pushes :func:`abandon_on_error` on the exit
stack that shuts its request pool down. A provider may offer (both optional, duck-typed):

- ``min_request_interval_s`` — seconds per request its rate limit allows on average (None or
  absent: unlimited); with ``fetch_batch_sessions`` it bounds how fast sessions can arrive;
- ``cancel()`` — abandon the calls in flight, so that their threads end at once instead of
  waiting minutes for a rate-limit slot (see ``PolygonProvider.cancel``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Executor
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class RateAwareTimeRemaining(ProgressColumn):
    """Time remaining: rich's estimate from the recent pace, but never less than the rate limit
    allows for what is left (``seconds_per_item`` each). Early in a rate-limited fill the pace
    is that of the first burst, which the limit does not let last."""

    def __init__(self, seconds_per_item: float | None = None) -> None:
        super().__init__()
        self.seconds_per_item = seconds_per_item

    def remaining_s(self, task: Task) -> float | None:
        """Seconds left, or None while unknown."""
        if task.finished:
            return 0.0
        estimates = [task.time_remaining]
        if self.seconds_per_item and task.total is not None:
            estimates.append((task.total - task.completed) * self.seconds_per_item)
        known = [e for e in estimates if e is not None]
        return max(known) if known else None

    def render(self, task: Task) -> Text:
        left = self.remaining_s(task)
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        return Text(str(dt.timedelta(seconds=round(left))), style="progress.remaining")


def fill_progress(enabled: bool, provider: object) -> Progress:
    """The fill's progress bar on stderr (stdout carries command output): sessions done of the
    total, time elapsed and a rate-aware time remaining; cleared when done."""
    interval = getattr(provider, "min_request_interval_s", None)
    per_request = max(1, int(getattr(provider, "fetch_batch_sessions", 1) or 1))
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    RateAwareTimeRemaining(interval / per_request if interval else None),
                    console=Console(stderr=True), transient=True, disable=not enabled)


ExitCallback = Callable[[type[BaseException] | None, BaseException | None, TracebackType | None],
                        bool]


def abandon_on_error(pool: Executor, provider: object) -> ExitCallback:
    """An :class:`contextlib.ExitStack` exit callback, pushed after the pool's shutdown so that
    it runs first: when the fill is leaving on an exception (Ctrl-C above all), drop the queued
    requests and cancel those in flight, so that shutting the pool down does not wait for them."""

    def on_exit(exc_type: type[BaseException] | None, exc: BaseException | None,
                tb: TracebackType | None) -> bool:
        if exc_type is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            cancel = getattr(provider, "cancel", None)
            if callable(cancel):
                cancel()
        return False  # the exception goes on

    return on_exit
