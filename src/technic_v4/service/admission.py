"""Admission of heavy work: a few slots and a memory budget shared by scans and heavy reads.

Scans, point-in-time or long symbol histories and the universe (a scan) all load whole-market
panels, whose size is known before they run: listings x bars x :data:`BYTES_PER_BAR`. A request
enters only while a slot is free and its estimate fits in what the budget has left; an HTTP
request that does not fit gets 429 with Retry-After (:class:`Busy`) instead of taking the
machine into swap, and a queued scan waits for room. A request larger than the whole budget can
never run and is refused with a message naming the setting (:class:`TooLarge`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

# A panel holds five float64 fields and an int32 day per bar (44 bytes); loading it from the
# store holds the queried window (date, sid and the five fields) beside it, and the scan's
# indicator arrays are of the same order. Measured: 8 concurrent 2,200-bar symbol requests on
# a 6,000-listing store took ~1.1 GB each, ~85 bytes per bar; 128 leaves room.
BYTES_PER_BAR = 128


def estimate_bytes(listings: int, bars: int) -> int:
    """Peak memory of loading ``bars`` bars of ``listings`` listings (see module docstring)."""
    return max(listings, 1) * max(bars, 1) * BYTES_PER_BAR


class Busy(Exception):
    """Every slot, or the memory budget, is taken; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int, active: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.active = active


class TooLarge(Exception):
    """A request whose estimate exceeds the whole memory budget."""


class Admission:
    """``slots`` concurrent heavy requests whose estimates add up to at most ``budget_bytes``."""

    def __init__(self, slots: int, budget_bytes: int) -> None:
        self.slots = slots
        self.budget = budget_bytes
        self._cond = threading.Condition()
        self._running = 0
        self._reserved = 0

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def running(self) -> int:
        return self._running

    def check(self, cost: int, what: str) -> None:
        """Raise :class:`TooLarge` when ``cost`` can never fit."""
        if cost > self.budget:
            raise TooLarge(f"{what} needs about {cost / 2**20:,.0f} MB, more than the service's "
                           f"memory budget of {self.budget / 2**20:,.0f} MB "
                           "(TECHNIC_MEMORY_BUDGET_MB); ask for fewer bars or raise the budget")

    def _fits(self, cost: int) -> bool:
        return self._running < self.slots and self._reserved + cost <= self.budget

    @contextlib.contextmanager
    def try_enter(self, cost: int, what: str, retry_after: Callable[[], int]) -> Iterator[None]:
        """Hold a slot and ``cost`` bytes for the block, or raise Busy / TooLarge at once."""
        self.check(cost, what)
        with self._cond:
            if not self._fits(cost):
                full = self._running >= self.slots
                raise Busy(f"{self._running} heavy requests are running"
                           + (", the most this service takes" if full else
                              f" and hold {self._reserved / 2**20:,.0f} MB of the "
                              f"{self.budget / 2**20:,.0f} MB memory budget")
                           + f"; retry in {retry_after()} s", retry_after(), self._running)
            self._take(cost)
        try:
            yield
        finally:
            self._give(cost)

    @contextlib.contextmanager
    def enter(self, cost: int, cancelled: Callable[[], bool]) -> Iterator[bool]:
        """Wait for a slot and ``cost`` bytes (capped at the budget); yields False when
        ``cancelled()`` became true while waiting (nothing is held then)."""
        cost = min(cost, self.budget)
        with self._cond:
            while not self._fits(cost) and not cancelled():
                self._cond.wait(0.2)
            entered = self._fits(cost)
            if entered:
                self._take(cost)
        if not entered:
            yield False
            return
        try:
            yield True
        finally:
            self._give(cost)

    def _take(self, cost: int) -> None:
        self._running += 1
        self._reserved += cost

    def _give(self, cost: int) -> None:
        with self._cond:
            self._running -= 1
            self._reserved -= cost
            self._cond.notify_all()
