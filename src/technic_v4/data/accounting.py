"""Request accounting: which layer served each bar of one user request, and what it cost.

A request scope (a scan, one ``get_price_history_batch`` call, one update) collects
:class:`~technic_v4.data.cache.Counters`; nested scopes add to the outermost one. Vendor requests
are read from the provider's own counters when a scope closes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np

from technic_v4.data.cache import Counters
from technic_v4.data.panel import Panel


class Accounting:
    """Per-thread request scopes, the last closed request and the running total."""

    def __init__(self, api_counts: Callable[[], dict[str, int]]) -> None:
        self._api_counts = api_counts
        self._api_seen = dict(api_counts())
        self._local = threading.local()
        # Concurrent requests (the HTTP service) close their counters one at a time. Vendor
        # requests are read from the provider's counters at close, so with overlapping
        # requests a call is charged to the one that closes first; totals stay exact.
        self.lock = threading.Lock()
        self.total = Counters()
        self.last = Counters()

    @contextlib.contextmanager
    def request(self) -> Iterator[Counters]:
        """Scope of one user request; nested scopes add to the outermost one."""
        outer = getattr(self._local, "counters", None)
        if outer is not None:
            yield outer
            return
        c = self._local.counters = Counters()
        try:
            yield c
        finally:
            self._local.counters = None
            c.close()
            with self.lock:
                self._take_api_calls(c)
                self.last = c
                self.total.add(c)

    def counters(self) -> Counters:
        """The current request's counters (outside a request: counted nowhere)."""
        c = getattr(self._local, "counters", None)
        return c if c is not None else Counters()

    def reset(self) -> None:
        with self.lock:
            self.total = Counters()
            self.last = Counters()

    def _take_api_calls(self, c: Counters) -> None:
        now = self._api_counts()
        for k, v in now.items():
            d = v - self._api_seen.get(k, 0)
            if d:
                c.api_calls[k] = c.api_calls.get(k, 0) + d
        self._api_seen = dict(now)


def count_panel(c: Counters, p: Panel, layer: str, rows: np.ndarray | None = None) -> None:
    """Count a panel's bars once: those on sessions a fill of this request brought in count
    at the layer they came from (vendor or redis), the rest at ``layer``."""
    if rows is not None:
        p = p.rows(np.asarray(rows, dtype=np.int64))
    got = int(p.n_bars.sum())
    c.requested += got
    rest = got
    if c.refetched:  # a split (or a back-fill) re-fetched these symbols' history in this request
        k = int(p.n_bars[np.isin(p.symbols, list(c.refetched))].sum())
        c.served["vendor"] += k
        rest -= k
    for source in ("vendor", "redis"):
        days = [d for d, s in c.fetched_days.items() if s == source]
        if days:
            k = int(np.isin(p.day, np.asarray(days, dtype=np.int64)).sum())
            c.served[source] += k
            rest -= k
    c.served[layer] += rest
