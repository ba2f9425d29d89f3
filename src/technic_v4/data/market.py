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
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from technic_v4.config.settings import Settings, get_settings
from technic_v4.data import calendar
from technic_v4.data.bars import BarBatch, ValidationReport, validate
from technic_v4.data.cache import Counters, MemoryCache
from technic_v4.data.panel import Panel, PanelFiles, assemble
from technic_v4.data.providers.base import Provider
from technic_v4.data.store import Store

if TYPE_CHECKING:
    from technic_v4.data.l3 import RedisLayer
from technic_v4.errors import ConfigError, DataError, ProviderError

log = logging.getLogger(__name__)

_CHUNK_SESSIONS = 64  # sessions per store transaction during a fill
_STALL_FLUSH_S = 1.0  # ... or fewer, when the next request has kept us waiting this long
_ADJUSTED = "adjusted_through"  # meta key: the session the stored bars are split-adjusted through


@dataclass
class UpdateReport:
    """What one ``ensure_current`` did."""

    sessions_fetched: list[dt.date] = field(default_factory=list)
    rows_stored: int = 0
    validation: ValidationReport = field(default_factory=ValidationReport)
    reference_refreshed: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # session -> why it is still missing
    splits_applied: list[str] = field(default_factory=list)  # symbols re-fetched after splits
    split_plan: str | None = None
    split_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.sessions_fetched
        return {"sessions_fetched": len(s), "first": str(s[0]) if s else None,
                "last": str(s[-1]) if s else None, "rows_stored": self.rows_stored,
                "validation": self.validation.as_dict(),
                "reference_refreshed": self.reference_refreshed,
                "failed_sessions": dict(self.failed), "splits_applied": self.splits_applied,
                "split_plan": self.split_plan, "split_error": self.split_error}


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
        self._panel_files = PanelFiles(self.store.path.with_name(self.store.path.stem + ".panels"))
        self.l3: RedisLayer | None = None
        if self.settings.redis_url:
            from technic_v4.data.l3 import RedisLayer

            self.l3 = RedisLayer(self.settings.redis_url, self.provider.store_key)
        self.total = Counters()
        self.last = Counters()
        self._local = threading.local()
        self._update_lock = threading.Lock()
        # Concurrent requests (the HTTP service) close their counters one at a time. Vendor
        # requests are read from the provider's counters at close, so with overlapping
        # requests a call is charged to the one that closes first; totals stay exact.
        self._stats_lock = threading.Lock()
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
            with self._stats_lock:
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
            stored_before = self.store.stored_sessions()
            missing = np.setdiff1d(want, stored_before)
            if len(missing):
                # New sessions may bring new listings: refresh reference data first, so that
                # their bars have a symbol to belong to.
                self.store.upsert_reference(self._reference_for(last))
                rep.reference_refreshed = True
                adj = self._fill(missing, rep, self.settings.progress if progress is None
                                 else progress, on_progress)
                if adj is not None:
                    # The store is split-adjusted through the oldest adjustment of its parts.
                    old = self.store.get_meta(_ADJUSTED)
                    if len(stored_before) and old is not None:
                        adj = min(adj, dt.date.fromisoformat(old))
                    elif len(stored_before):
                        adj = stored_before[0].astype(dt.date)
                    self.store.set_meta(_ADJUSTED, str(adj))
            self._apply_splits(rep)
            self.last_update = rep
            return rep

    def _apply_splits(self, rep: UpdateReport) -> None:
        """Re-fetch the adjusted history of stored symbols that split after the store's
        adjustment date, so the store never mixes adjusted and unadjusted bars.

        The fetch planner takes per-ticker requests when fewer symbols split than there are
        stored sessions, else one grouped request per session.
        """
        stored = self.store.stored_sessions()
        if len(stored) == 0:
            return
        first, last = stored[0].astype(dt.date), stored[-1].astype(dt.date)
        meta = self.store.get_meta(_ADJUSTED)
        adjusted = dt.date.fromisoformat(meta) if meta else first
        if adjusted >= last:
            return
        since = adjusted + dt.timedelta(days=1)
        splits = self.l3.get_splits(since, last) if self.l3 is not None else None
        if splits is None:
            try:
                splits = self.provider.splits(since)
            except ProviderError as e:
                self._counters().errors += 1
                rep.split_error = str(e)
                log.warning("split check failed (retried at the next update): %s", e)
                return
            if self.l3 is not None:
                self.l3.put_splits(since, last, splits)
        when = pd.to_datetime(splits["ExecutionDate"]).dt.date if len(splits) else pd.Series()
        known = set(self.reference()["Symbol"])
        # A split on or before the first stored session changes nothing stored.
        need = sorted({s for s, d in zip(splits["Symbol"], when, strict=True)
                       if s in known and first < d <= last})
        if not need:
            self.store.set_meta(_ADJUSTED, str(last))
            return
        try:
            if len(need) <= len(stored):
                rep.split_plan = f"{len(need)} per-ticker requests"
                batch = self.provider.bars_for_symbols(need, first, last)
            else:
                rep.split_plan = f"{len(stored)} grouped requests"
                batch = self.provider.bars_for_sessions([d.astype(dt.date) for d in stored])
                batch = batch.take(np.flatnonzero(np.isin(batch.symbol, need)))
        except ProviderError as e:
            self._counters().errors += 1
            rep.split_error = str(e)
            log.warning("re-fetch after splits of %s failed (retried next update): %s",
                        ", ".join(need), e)
            return
        kept, vr = validate(batch)
        rep.validation.merge(vr)
        # A re-fetch that comes back short would replace history with a hole: keep the stored
        # bars of such symbols, say so, and leave the adjustment date for the next update.
        have = self.store.bar_counts(need, first, last)
        got = pd.Series(kept.symbol).value_counts()
        short = [s for s in need if got.get(s, 0) < 0.9 * have.get(s, 0)]
        if short:
            rep.split_error = (f"re-fetch after splits came back short for {', '.join(short)}; "
                               "their stored bars are kept and the next update retries")
            log.warning("%s", rep.split_error)
            need = [s for s in need if s not in short]
            kept = kept.take(np.flatnonzero(np.isin(kept.symbol, need)))
            if not need:
                return
        self.store.replace_symbols(kept, need, first, last,
                                   meta={} if short else {_ADJUSTED: str(last)})
        c = self._counters()
        c.fetched["vendor"] += vr.rows_kept
        c.refetched.update(need)
        rep.splits_applied = need
        self.memory.clear()
        if self.l3 is not None:
            # Share the re-adjusted history: every instance's fills stay adjusted.
            self.l3.put_sessions(self.store.sessions_batch(first, last), stored, last)

    def _reference_for(self, last: dt.date) -> pd.DataFrame:
        """Reference data for a store filled through ``last``: from L3 when another instance
        already fetched it for that session, else from the provider (and shared via L3)."""
        if self.l3 is not None:
            ref = self.l3.get_reference(last)
            if ref is not None:
                return ref
        ref = self.provider.reference()
        if self.l3 is not None:
            self.l3.put_reference(ref, last)
        return ref

    def _fill(self, missing: np.ndarray, rep: UpdateReport, progress: bool,
              on_progress: Callable[[int, int], None] | None) -> dt.date | None:
        """Store ``missing`` sessions: from L3 when shared, else from the provider in groups.

        A group the provider fails on is left missing (recorded in ``rep.failed``); the store
        is unchanged for it and the next update tries again. Returns the session through which
        the stored bars are split-adjusted (the oldest of their sources), None if none stored.
        """
        adjusted: list[dt.date] = []
        vendor_adjusted = self.provider.latest_session()
        from technic_v4.data.progress import abandon_on_error, fill_progress

        c = self._counters()
        total = len(missing)

        def stored(sess: np.ndarray, kept: BarBatch, vr: ValidationReport, source: str) -> None:
            rep.rows_stored += self.store.append_sessions(kept, sess, vr)
            rep.validation.merge(vr)
            rep.sessions_fetched.extend(d.astype(dt.date) for d in sess)
            c.fetched[source] += vr.rows_kept
            c.fetched_days.update(dict.fromkeys(sess.astype(np.int64).tolist(), source))
            bar.advance(task, len(sess))
            if on_progress is not None:
                on_progress(len(rep.sessions_fetched) + len(rep.failed), total)

        pending: list[tuple[np.ndarray, BarBatch, ValidationReport]] = []

        def flush() -> None:
            if not pending:
                return
            vr = ValidationReport()
            for p in pending:
                vr.merge(p[2])
            stored(np.concatenate([p[0] for p in pending]),
                   BarBatch.concat([p[1] for p in pending]), vr, "vendor")
            adjusted.append(vendor_adjusted)
            pending.clear()

        with fill_progress(progress, self.provider) as bar, contextlib.ExitStack() as stack:
            task = bar.add_task(f"Storing {total} sessions", total=total)
            if self.l3 is not None:
                shared = self.l3.get_session_tables(missing)
                ordered = sorted(shared)
                for i in range(0, len(ordered), 4 * _CHUNK_SESSIONS):
                    days = np.array(ordered[i:i + 4 * _CHUNK_SESSIONS], dtype="datetime64[D]")
                    # Validated by the instance that shared it; Arrow straight into DuckDB.
                    tables = [shared[d][0].append_column(
                        "date", pa.array(np.full(shared[d][0].num_rows, d)).cast(pa.date32()))
                        for d in days]
                    table = pa.concat_tables(tables).select(
                        ["symbol", "date", "open", "high", "low", "close", "volume"])
                    n = self.store.append_arrow(table, days)
                    adjusted += [shared[d][1] or d.astype(dt.date) for d in days]
                    rep.rows_stored += n
                    rep.sessions_fetched.extend(d.astype(dt.date) for d in days)
                    c.fetched["redis"] += n
                    c.fetched_days.update(dict.fromkeys(days.astype(np.int64).tolist(), "redis"))
                    bar.advance(task, len(days))
                    if on_progress is not None:
                        on_progress(len(rep.sessions_fetched) + len(rep.failed), total)
                missing = np.setdiff1d(missing, np.array(ordered, dtype="datetime64[D]"))
            group = max(1, min(self.provider.fetch_batch_sessions, _CHUNK_SESSIONS))
            groups = [missing[i:i + group] for i in range(0, len(missing), group)]
            # Vendors answer one session per request: keep a few requests in flight (I/O
            # bound), store them in order. A provider serving many sessions per call runs alone.
            workers = self.settings.fetch_concurrency if group == 1 else 1
            pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                      thread_name_prefix="technic-fetch")
            futures = [pool.submit(self.provider.bars_for_sessions,
                                   [d.astype(dt.date) for d in g]) for g in groups]
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            stack.push(abandon_on_error(pool, self.provider))  # Ctrl-C: exit promptly
            for sess, fut in zip(groups, futures, strict=True):
                if pending and not wait([fut], timeout=_STALL_FLUSH_S).done:
                    flush()  # a slow (rate-limited) vendor: an interrupt loses little
                try:
                    batch = fut.result()
                except ProviderError as e:
                    c.errors += 1
                    for d in sess:
                        rep.failed[str(d)] = str(e)
                    log.warning("could not fetch %s..%s: %s", sess[0], sess[-1], e)
                    if on_progress is not None:
                        on_progress(len(rep.sessions_fetched) + len(rep.failed), total)
                    continue
                kept, vr = validate(batch)
                # A trading session the vendor answered with no rows at all (not published
                # yet) stays missing, to be asked again, rather than stored empty forever.
                empty = sess[~np.isin(sess, kept.date)]
                for d in empty:
                    rep.failed[str(d)] = "the vendor returned no rows for this session"
                sess = sess[np.isin(sess, kept.date)]
                if len(sess) == 0:
                    continue
                if self.l3 is not None:
                    self.l3.put_sessions(kept, sess, vendor_adjusted)
                # One store transaction per chunk of sessions, not per request.
                pending.append((sess, kept, vr))
                if sum(len(p[0]) for p in pending) >= _CHUNK_SESSIONS:
                    flush()
            flush()
        self.memory.clear()  # panels of the old store version are unreachable anyway
        dropped = rep.validation.rows_dropped
        if dropped:
            log.info("validation dropped %d of %d rows: %s", dropped,
                     rep.validation.rows_in,
                     {k: v for k, v in rep.validation.dropped.items() if v})
        return min(adjusted) if adjusted else None

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
        stored = self.store.stored_sessions()
        first = stored[0].astype(dt.date)
        if day < first:
            raise ConfigError("as_of_date", f"{day} is before the first stored session {first}")
        return min(calendar.session_on_or_before(day), last)

    def panel(self, as_of: dt.date, n_bars: int, count_rows: np.ndarray | None = None
              ) -> Panel:
        """Every stored symbol's last ``n_bars`` bars up to ``as_of`` (L1-cached).

        The request is charged for the bars of ``count_rows`` (default: every row)."""
        if n_bars < 1:
            raise ConfigError("days", f"must be >= 1, got {n_bars}")
        base = (str(self.store.path), self.store.version, as_of)
        hit: Panel | None = self.memory.find(
            lambda k: k[:3] == base and k[3] >= n_bars)
        if hit is not None:
            p = hit.tail(n_bars)
            self._count(p, "memory", count_rows)
            return p
        key = None
        if self.l3 is not None:
            key = self.l3.panel_key(as_of, n_bars, self._fingerprint(as_of))
            shared = self.l3.get_panel(key)
            adopted = self._adopt(shared) if shared is not None else None
            if adopted is not None:
                self.memory.put((*base, n_bars), adopted, adopted.nbytes,
                                rows=len(adopted.symbols))
                self._count(adopted, "redis", count_rows)
                return adopted
        version = self.store.version
        loaded = self._panel_files.load(version, as_of, n_bars)
        if loaded is None:
            loaded = self._load_panel(as_of, n_bars)
            self._panel_files.save(version, loaded)
        self.memory.put((*base, n_bars), loaded, loaded.nbytes, rows=len(loaded.symbols))
        if key is not None and self.l3 is not None:
            self.l3.put_panel(key, loaded)
        self._count(loaded, "store", count_rows)
        return loaded

    def _fingerprint(self, as_of: dt.date) -> str:
        """Names the data a panel is built from, identically on every instance: the dataset,
        the stored sessions up to ``as_of`` and the listings."""
        import hashlib

        sess = self.store.stored_sessions()
        sess = sess[sess <= np.datetime64(as_of, "D")]
        h = hashlib.sha256()
        h.update(self.provider.store_key.encode())
        h.update(sess.astype(np.int64).tobytes())
        # Re-adjusting history after a split changes prices, not sessions or listings.
        h.update(str(self.store.get_meta(_ADJUSTED)).encode())
        h.update("\n".join(self.reference()["Symbol"].astype(str)).encode())
        return h.hexdigest()[:20]

    def _adopt(self, shared: Panel) -> Panel | None:
        """A panel from L3 in this store's row order and sids (None if the listings differ)."""
        ref = self.reference()
        pos = pd.Index(shared.symbols.astype(str)).get_indexer(ref["Symbol"].astype(str))
        if (pos < 0).any() or len(pos) != len(shared.symbols):
            return None
        # Instances filled from the same reference data share the row order: no copy then.
        p = shared if np.array_equal(pos, np.arange(len(pos))) else shared.rows(pos)
        return replace(p, sids=ref["sid"].to_numpy(np.int32))

    def _count(self, p: Panel, layer: str, rows: np.ndarray | None = None) -> None:
        """Count a panel's bars once: those on sessions a fill of this request brought in count
        at the layer they came from (vendor or redis), the rest at ``layer``."""
        c = self._counters()
        if rows is not None:
            p = p.rows(np.asarray(rows, dtype=np.int64))
        got = int(p.n_bars.sum())
        c.requested += got
        rest = got
        if c.refetched:  # a split re-fetched these symbols' whole history in this request
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

    def clear_panel_files(self) -> None:
        """Delete the panel kept beside the store (the next load queries the store)."""
        self._panel_files.clear()

    def close(self) -> None:
        """Close the store and the provider's connections."""
        self.store.close()
        close = getattr(self.provider, "close", None)
        if callable(close):
            close()

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            last = self.last.as_dict()
            cumulative = self.total.as_dict()
        return {
            "redis": self.l3.stats() if self.l3 is not None else None,
            "hit_rate": last["hit_rate"],
            "cache_size": self.memory.rows,
            "cache_entries": len(self.memory),
            "cache_bytes": self.memory.nbytes,
            "memory_lookups": {"hits": self.memory.hits, "misses": self.memory.misses,
                               "evictions": self.memory.evictions},
            "last_request": last,
            "cumulative": cumulative,
            "store": {"path": str(self.store.path), "size_bytes": self.store.size_bytes(),
                      "version": self.store.version},
            "api_calls": dict(self.provider.request_counts),
        }

    def reset_stats(self) -> None:
        self.total = Counters()
        self.last = Counters()
