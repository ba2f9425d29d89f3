"""MarketData: provider -> validation -> local store (L2) -> panels, behind an L1 memory cache.

One object owns the data path for a process: it keeps the store current with the provider
(fetching only missing sessions), loads panels with array operations, and counts what each
request cost at each layer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.config.settings import Settings, get_settings
from technic_v4.data import calendar
from technic_v4.data.bars import ValidationReport, validate
from technic_v4.data.cache import Counters, MemoryCache
from technic_v4.data.panel import Panel, assemble
from technic_v4.data.providers.base import Provider
from technic_v4.data.store import Store
from technic_v4.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_CHUNK_SESSIONS = 64  # sessions per store transaction during a fill


@dataclass
class UpdateReport:
    """What one ``ensure_current`` did."""

    sessions_fetched: list[dt.date] = field(default_factory=list)
    rows_stored: int = 0
    validation: ValidationReport = field(default_factory=ValidationReport)
    reference_refreshed: bool = False

    def as_dict(self) -> dict[str, Any]:
        s = self.sessions_fetched
        return {"sessions_fetched": len(s), "first": str(s[0]) if s else None,
                "last": str(s[-1]) if s else None, "rows_stored": self.rows_stored,
                "validation": self.validation.as_dict(),
                "reference_refreshed": self.reference_refreshed}


def make_provider(settings: Settings) -> Provider:
    """The provider named by ``settings.data_provider``."""
    if settings.data_provider == "synthetic":
        from technic_v4.data.providers.synthetic import SyntheticProvider

        return SyntheticProvider(n_listings=settings.synthetic_listings,
                                 seed=settings.synthetic_seed, epoch=settings.synthetic_epoch,
                                 end=settings.synthetic_end)
    if settings.data_provider == "polygon":
        from technic_v4.data.providers.polygon import PolygonProvider

        return PolygonProvider.from_settings(settings)
    if settings.data_provider == "files":
        from technic_v4.data.providers.files import FilesProvider

        return FilesProvider.from_settings(settings)
    raise ConfigError("data_provider", f"unknown provider {settings.data_provider!r}; valid: "
                      "'synthetic', 'polygon', 'files'")


class MarketData:
    """The data path of one process (see module docstring)."""

    def __init__(self, settings: Settings | None = None, provider: Provider | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings or get_settings()
        self.provider = provider or make_provider(self.settings)
        self.store = store or Store(Path(self.settings.data_dir) / f"{self.provider.store_key}.duckdb")
        self.memory = MemoryCache(self.settings.memory_cache_mb * 1024 * 1024)
        self.total = Counters()
        self.last = Counters()
        self._local = threading.local()
        self._update_lock = threading.Lock()
        self.last_update: UpdateReport | None = None
        self._api_seen = dict(self.provider.request_counts)

    # -- request accounting ----------------------------------------------------------------------
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
            self._take_api_calls(c)
            self.last = c
            self.total.add(c)

    def _counters(self) -> Counters:
        c = getattr(self._local, "counters", None)
        return c if c is not None else Counters()  # outside a request: counted nowhere

    def _take_api_calls(self, c: Counters) -> None:
        now = self.provider.request_counts
        for k, v in now.items():
            d = v - self._api_seen.get(k, 0)
            if d:
                c.api_calls[k] = c.api_calls.get(k, 0) + d
        self._api_seen = dict(now)

    # -- keeping the store current --------------------------------------------------------------
    def ensure_current(self, through: dt.date | None = None, progress: bool | None = None,
                       on_progress: Callable[[int, int], None] | None = None) -> UpdateReport:
        """Fetch every provider session missing from the store, up to ``through``.

        ``progress`` shows a bar on stderr (default: the ``progress`` setting);
        ``on_progress(sessions_done, sessions_total)`` reports to a caller.
        """
        with self.request(), self._update_lock:
            rep = UpdateReport()
            last = self.provider.latest_session()
            if through is not None:
                last = min(last, through)
            want = calendar.sessions_between(self.provider.first_session(), last)
            missing = np.setdiff1d(want, self.store.stored_sessions())
            if len(missing):
                # New sessions may bring new listings: refresh reference data first, so that
                # their bars have a symbol to belong to.
                self.store.upsert_reference(self.provider.reference())
                rep.reference_refreshed = True
                self._fill(missing, rep, self.settings.progress if progress is None else progress,
                           on_progress)
            self.last_update = rep
            return rep

    def _fill(self, missing: np.ndarray, rep: UpdateReport, progress: bool,
              on_progress: Callable[[int, int], None] | None) -> None:
        from rich.progress import Progress

        batch = self.provider.bars_for_sessions([d.astype(dt.date) for d in missing])
        order = np.argsort(batch.date, kind="stable")
        batch = batch.take(order)
        bounds = np.searchsorted(batch.date, missing)
        chunks = range(0, len(missing), _CHUNK_SESSIONS)
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task(f"Storing {len(missing)} sessions", total=len(missing))
            for i in chunks:
                sess = missing[i:i + _CHUNK_SESSIONS]
                lo = bounds[i]
                hi = bounds[i + _CHUNK_SESSIONS] if i + _CHUNK_SESSIONS < len(missing) else len(batch)
                kept, vr = validate(batch.take(np.arange(lo, hi)))
                rep.rows_stored += self.store.append_sessions(kept, sess, vr)
                rep.validation.merge(vr)
                rep.sessions_fetched.extend(d.astype(dt.date) for d in sess)
                c = self._counters()
                c.fetched_rows += vr.rows_kept
                c.fetched_days.update(sess.astype(np.int64).tolist())
                bar.advance(task, len(sess))
                if on_progress is not None:
                    on_progress(len(rep.sessions_fetched), len(missing))
        self.memory.clear()  # panels of the old store version are unreachable anyway
        dropped = rep.validation.rows_dropped
        if dropped:
            log.warning("validation dropped %d of %d vendor rows: %s", dropped,
                        rep.validation.rows_in,
                        {k: v for k, v in rep.validation.dropped.items() if v})

    # -- reading --------------------------------------------------------------------------------
    def reference(self) -> pd.DataFrame:
        key = ("reference", str(self.store.path), self.store.version)
        ref = self.memory.get(key)
        if ref is None:
            ref = self.store.reference()
            self.memory.put(key, ref, int(ref.memory_usage(deep=True).sum()))
        return ref

    def resolve_as_of(self, as_of: dt.date | str | None) -> dt.date:
        """The session a request is about: ``as_of`` (or the newest stored one) on or before."""
        last = self.store.last_session()
        if last is None:
            raise DataError("the local store is empty: run `technic data update` or a scan first")
        if as_of is None:
            return last
        day = pd.Timestamp(as_of).date()
        first = self.provider.first_session()
        if day < first:
            raise ConfigError("as_of_date", f"{day} is before the first stored session {first}")
        return min(calendar.session_on_or_before(day), last)

    def panel(self, as_of: dt.date, n_bars: int) -> Panel:
        """Every stored symbol's last ``n_bars`` bars up to ``as_of`` (L1-cached)."""
        if n_bars < 1:
            raise ConfigError("days", f"must be >= 1, got {n_bars}")
        base = (str(self.store.path), self.store.version, as_of)
        hit: Panel | None = self.memory.find(
            lambda k: k[:3] == base and k[3] >= n_bars)
        if hit is not None:
            p = hit.tail(n_bars)
            self._count(p, "memory")
            return p
        p = self._load_panel(as_of, n_bars)
        self.memory.put((*base, n_bars), p, p.nbytes, rows=len(p.symbols))
        self._count(p, "store")
        return p

    def _count(self, p: Panel, layer: str) -> None:
        """Count a panel's bars once: those on sessions fetched in this request are vendor's."""
        c = self._counters()
        got = int(p.n_bars.sum())
        vendor = 0
        if c.fetched_days:
            days = np.fromiter(c.fetched_days, dtype=np.int64, count=len(c.fetched_days))
            vendor = int(np.isin(p.day, days).sum())
        c.requested += got
        c.served["vendor"] += vendor
        c.served[layer] += got - vendor

    def _load_panel(self, as_of: dt.date, n_bars: int) -> Panel:
        ref = self.reference()
        sids = ref["sid"].to_numpy(np.int32)
        sess = calendar.sessions_between(self.provider.first_session(), as_of)
        margin = max(10, n_bars // 10)
        start = sess[max(0, len(sess) - n_bars - margin)].astype(dt.date)
        window = self.store.load_range(start, as_of)
        # Rows short of n_bars in the window but with older history (gaps, halts) get an exact
        # last-n query; listings younger than the window simply have fewer bars.
        cnt = np.bincount(pd.Index(sids).get_indexer(window["sid"]), minlength=len(sids))
        start_day = int(np.datetime64(start, "D").astype(np.int64))
        list_day = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]").astype(np.int64)
        short = (cnt < n_bars) & (list_day < start_day)
        extra = None
        if short.any():
            extra = self.store.load_last_bars(sids[short], as_of, n_bars)
        days = sess[np.searchsorted(sess, np.datetime64(start, "D")):].astype(np.int64)
        return assemble(ref["Symbol"].to_numpy(object), sids, n_bars, as_of, window, days, extra)

    def clear_memory(self) -> None:
        self.memory.clear()

    def stats(self) -> dict[str, Any]:
        last = self.last.as_dict()
        return {
            "hit_rate": last["hit_rate"],
            "cache_size": self.memory.rows,
            "cache_entries": len(self.memory),
            "cache_bytes": self.memory.nbytes,
            "memory_lookups": {"hits": self.memory.hits, "misses": self.memory.misses,
                               "evictions": self.memory.evictions},
            "last_request": last,
            "cumulative": self.total.as_dict(),
            "store": {"path": str(self.store.path), "size_bytes": self.store.size_bytes(),
                      "version": self.store.version},
            "api_calls": dict(self.provider.request_counts),
        }

    def reset_stats(self) -> None:
        self.total = Counters()
        self.last = Counters()
