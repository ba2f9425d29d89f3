"""The L1 memory cache and the honest counters behind ``get_cache_stats``.

Counting unit: symbol-sessions (bars). For every request (a scan, or one
``get_price_history_batch`` call) the bars it asked for are counted once, at the layer that served
them: ``memory`` (L1), ``redis`` (L3, shared by instances), ``store`` (L2, the local database) or
``vendor`` (fetched from the provider during this request). Bars that a fill in the same request
brought into the store count at the layer they came from (``redis`` or ``vendor``). ``hit_rate`` is the share served without a vendor request, per request and
cumulatively; the two are never mixed (the predecessor reported a cumulative counter over a cold
and a warm run as "the" hit rate, which could not exceed 50 %).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

LAYERS = ("memory", "redis", "store", "vendor")


@dataclass
class Counters:
    requested: int = 0  # bars asked for
    served: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LAYERS, 0))
    api_calls: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    # Bars a fill stored during this request, by source layer ("redis" or "vendor"), and the
    # source of each session it stored (days since 1970).
    fetched: dict[str, int] = field(default_factory=lambda: {"redis": 0, "vendor": 0})
    fetched_days: dict[int, str] = field(default_factory=dict)
    refetched: set[str] = field(default_factory=set)  # symbols whose history a split re-fetched

    @property
    def fetched_rows(self) -> int:
        return sum(self.fetched.values())

    def close(self) -> None:
        """A request that only fetched (``technic data update``) asked for what it fetched."""
        if self.requested == 0 and self.fetched_rows:
            self.requested = self.fetched_rows
            for layer, n in self.fetched.items():
                self.served[layer] += n

    @property
    def hit_rate(self) -> float:
        """Percent of requested bars served without a vendor request (100.0 when none asked)."""
        if self.requested == 0:
            return 100.0
        return 100.0 * (self.requested - self.served["vendor"]) / self.requested

    def add(self, other: Counters) -> None:
        self.requested += other.requested
        self.errors += other.errors
        for k, v in other.fetched.items():
            self.fetched[k] = self.fetched.get(k, 0) + v
        for k, v in other.served.items():
            self.served[k] += v
        for k, v in other.api_calls.items():
            self.api_calls[k] = self.api_calls.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "hits": self.requested - self.served["vendor"],
            "misses": self.served["vendor"],
            "hit_rate": round(self.hit_rate, 4),
            "served_by": dict(self.served),
            "api_calls": dict(self.api_calls),
            "api_calls_total": sum(self.api_calls.values()),
            "fetched_rows": dict(self.fetched),
            "errors": self.errors,
        }


class MemoryCache:
    """L1: an LRU of immutable objects bounded by bytes. Values declare their own size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def find(self, pred: Any) -> Any | None:
        """The most recently used value whose key satisfies ``pred`` (counted as a hit)."""
        with self._lock:
            for key in reversed(self._items):
                if pred(key):
                    self._items.move_to_end(key)
                    self.hits += 1
                    return self._items[key][0]
            self.misses += 1
            return None

    def put(self, key: Hashable, value: Any, nbytes: int, rows: int = 0) -> None:
        with self._lock:
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes, rows)
            self._items.move_to_end(key)
            while self._nbytes() > self.max_bytes:
                self._items.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def _nbytes(self) -> int:  # caller holds the lock
        return sum(v[1] for v in self._items.values())

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes()

    @property
    def rows(self) -> int:
        with self._lock:
            return sum(v[2] for v in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
