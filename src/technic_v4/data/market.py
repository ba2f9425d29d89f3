"""MarketData: provider -> validation -> local store (L2) -> panels, behind an L1 memory cache.

One object owns the data path for a process, as a thin facade over its parts:

    data/fill.py          FetchPlanner: keeps the store current (missing sessions, splits)
    data/accounting.py    request scopes and the counters of what each request cost per layer
    data/cache.py         the L1 memory cache; data/panel.py the panel files beside the store
    data/l3.py            the shared Redis layer (optional)
    data/providers/       the vendors and ``make_provider``

MarketData itself reads: reference data, as-of resolution and panels through L1 -> L3 -> panel
files -> store. Bars are stored as traded; every panel is adjusted as of its as-of session
(``data/adjust.py``), and the adjustment basis (as-of, mode, the actions) is part of every
cache key: a panel adjusted as of one date, or in one mode, is never served for another.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from technic_v4.config.settings import Settings, get_settings
from technic_v4.data import adjust as adj
from technic_v4.data import calendar
from technic_v4.data.accounting import Accounting, count_panel
from technic_v4.data.adjust import Actions
from technic_v4.data.cache import Counters, MemoryCache
from technic_v4.data.fill import BACKFILL, FetchPlanner, UpdateReport
from technic_v4.data.panel import Panel, PanelFiles, assemble
from technic_v4.data.providers.base import Provider
from technic_v4.data.providers.factory import make_provider
from technic_v4.data.store import Store

if TYPE_CHECKING:
    from technic_v4.data.l3 import RedisLayer
from technic_v4.errors import ConfigError, DataError

__all__ = ["FEW_SYMBOLS", "AsOf", "MarketData", "UpdateReport", "make_provider"]

# Requests naming at most this many symbols load only theirs (MarketData.symbols_panel).
FEW_SYMBOLS = 64


@dataclass(frozen=True)
class AsOf:
    """The session a request is about, and why it differs from the one asked for."""

    session: dt.date  # a stored session
    requested: dt.date | None  # the session asked for (None: the newest stored)
    note: str | None  # set when ``session`` is not the requested one


def store_path(settings: Settings, provider: Provider) -> Path:
    """Where the local store of ``provider``'s dataset lives (one DuckDB file per dataset)."""
    return Path(settings.data_dir) / f"{provider.store_key}.duckdb"


def panel_dir(store: Path) -> Path:
    """The folder of panel files kept beside a store."""
    return store.with_name(store.stem + ".panels")


def delete_store(path: Path) -> None:
    """Delete a store and everything kept beside it, without opening it (a damaged file too)."""
    import shutil

    for p in (path, path.with_name(path.name + ".wal"), path.with_name(path.name + ".version")):
        p.unlink(missing_ok=True)
    shutil.rmtree(panel_dir(path), ignore_errors=True)


class MarketData:
    """The data path of one process (see module docstring)."""

    def __init__(self, settings: Settings | None = None, provider: Provider | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings or get_settings()
        self.provider = provider or make_provider(self.settings)
        self.store = store or Store(store_path(self.settings, self.provider))
        self.memory = MemoryCache(self.settings.memory_cache_mb * 1024 * 1024)
        self._panel_files = PanelFiles(panel_dir(self.store.path))
        self.l3: RedisLayer | None = None
        if self.settings.redis_url:
            from technic_v4.data.l3 import RedisLayer

            self.l3 = RedisLayer(self.settings.redis_url, self.provider.store_key)
        self._accounting = Accounting(lambda: self.provider.request_counts)
        self._update_lock = threading.Lock()
        self._actions: tuple[tuple[str | None, int], Actions] | None = None
        self.last_update: UpdateReport | None = None
        self._planner = FetchPlanner(self.settings, self.provider, self.store, self.l3,
                                     self._accounting.counters, self.reference,
                                     self.memory.clear)

    # -- request accounting ----------------------------------------------------------------------
    def request(self) -> AbstractContextManager[Counters]:
        """Scope of one user request; nested scopes add to the outermost one."""
        return self._accounting.request()

    @property
    def total(self) -> Counters:
        """Counters summed over every closed request."""
        return self._accounting.total

    @property
    def last(self) -> Counters:
        """Counters of the last closed request."""
        return self._accounting.last

    def _counters(self) -> Counters:
        return self._accounting.counters()

    # -- keeping the store current --------------------------------------------------------------
    def ensure_current(self, through: dt.date | None = None, progress: bool | None = None,
                       on_progress: Callable[[int, int], None] | None = None,
                       wait: bool = True) -> UpdateReport:
        """Fetch every provider session missing from the store, up to ``through``.

        ``progress`` shows a bar on stderr (default: the ``progress`` setting);
        ``on_progress(sessions_done, sessions_total)`` reports to a caller. ``wait=False``
        (what scans pass) does not wait for an update already running in another thread or
        process: the report's ``busy`` says so and the caller reads what is stored.
        """
        with self.request():
            if not self._update_lock.acquire(blocking=wait or self.store.last_session() is None):
                rep = UpdateReport(busy="another update of the local store is running in this "
                                        "process; read what is stored")
                self.last_update = rep
                return rep
            try:
                rep = self._planner.update(
                    through, self.settings.progress if progress is None else progress,
                    on_progress, wait=wait)
                self.last_update = rep
                return rep
            finally:
                self._update_lock.release()

    # -- reading --------------------------------------------------------------------------------
    def reference(self) -> pd.DataFrame:
        return self.store.reference()  # cached by the store per (store_id, version)

    def resolve_as_of(self, as_of: dt.date | str | None) -> dt.date:
        """The session a request is about (see :meth:`resolve`)."""
        return self.resolve(as_of).session

    def resolve(self, as_of: dt.date | str | None) -> AsOf:
        """The stored session a request is about: the newest stored one for None, else the
        session on or before ``as_of``; when that session is not stored (its fetch failed),
        the stored session before it, with a note saying so.

        Raises DataError on an empty store, and ConfigError (``as_of_date``) before the first
        stored session or after the latest one (naming it).
        """
        stored = self.store.stored_sessions()
        if len(stored) == 0:
            raise DataError("the local store is empty: run `technic data update` or a scan first")
        first, last = stored[0].astype(dt.date), stored[-1].astype(dt.date)
        if as_of is None:
            return AsOf(last, None, None)
        day = pd.Timestamp(as_of).date()
        if day < first:
            raise ConfigError("as_of_date", f"{day} is before the first stored session {first}")
        want = calendar.session_on_or_before(day)
        failed = self.last_update.failed if self.last_update is not None else {}
        if want > last and str(want) not in failed:
            raise ConfigError("as_of_date", f"{day} is after the latest stored session {last}; "
                              f"give a date on or before {last}")
        i = int(np.searchsorted(stored, np.datetime64(want, "D"), side="right")) - 1
        got = stored[i].astype(dt.date)
        if got == want:
            return AsOf(got, want, None)
        why = failed.get(str(want), "it is not in the local store")
        return AsOf(got, want, f"session {want} could not be fetched ({why}): used {got}, "
                               "the stored session before it")

    def sessions(self, as_of: dt.date) -> np.ndarray:
        """Calendar sessions from the first stored session through ``as_of`` (datetime64[D]).

        From the store, not the provider: a provider's first session can slide forward (a
        vendor's history window) while the store keeps older bars."""
        stored = self.store.stored_sessions()
        if len(stored) == 0:
            return stored
        return calendar.sessions_between(stored[0].astype(dt.date), as_of)

    def panel(self, as_of: dt.date, n_bars: int, count_rows: np.ndarray | None = None,
              adjust: str = adj.DEFAULT_MODE) -> Panel:
        """Every stored symbol's last ``n_bars`` bars up to ``as_of``, adjusted as of ``as_of``
        in mode ``adjust`` (``"split"``, ``"total"`` or ``"none"``; L1-cached adjusted).

        The request is charged for the bars of ``count_rows`` (default: every row). ``n_bars``
        is capped at the number of stored sessions (no row can have more bars): the panel may
        be narrower than asked, never larger than the store."""
        mode = adj.check_mode(adjust)
        if n_bars < 1:
            raise ConfigError("days", f"must be >= 1, got {n_bars}")
        n_bars = min(n_bars, max(1, self.max_bars()))
        # The store identity names the bars and the actions; as-of and mode the basis.
        base = (str(self.store.path), *self.store.identity(), as_of, mode)
        hit: Panel | None = self.memory.find(
            lambda k: k[:5] == base and k[5] >= n_bars)
        if hit is not None:
            p = hit.tail(n_bars)
            self._count(p, "memory", count_rows)
            return p
        key = None
        if self.l3 is not None:
            key = self.l3.panel_key(as_of, n_bars, self._fingerprint(as_of, mode))
            shared = self.l3.get_panel(key)
            adopted = self._adopt(shared) if shared is not None else None
            if adopted is not None:
                adopted = adopted.adjusted(self.actions(), mode)
                self.memory.put((*base, n_bars), adopted, adopted.nbytes,
                                rows=len(adopted.symbols))
                self._count(adopted, "redis", count_rows)
                return adopted
        ident = self.store.identity()
        loaded = self._panel_files.load(ident, as_of, n_bars, mode)
        if loaded is not None:
            loaded = replace(loaded, actions=self.actions())
        else:
            with self.store.reading():  # every query of the build reads one store version
                ident = self.store.identity()
                loaded = self._load_panel(as_of, n_bars).adjusted(self.actions(), mode)
            self._panel_files.save(ident, loaded)
        base = (str(self.store.path), *ident, as_of, mode)
        self.memory.put((*base, n_bars), loaded, loaded.nbytes, rows=len(loaded.symbols))
        if key is not None and self.l3 is not None:
            # L3 holds the raw panel: every instance adjusts it with its own store's actions.
            self.l3.put_panel(key, loaded.unadjusted())
        self._count(loaded, "store", count_rows)
        return loaded

    def actions(self) -> Actions:
        """The store's corporate actions as arrays (cached per store identity)."""
        ident = self.store.identity()
        cached = self._actions
        if cached is not None and cached[0] == ident:
            return cached[1]
        df = self.store.actions()
        acts = Actions.build(df["sid"].to_numpy(np.int32),
                             df["ExDate"].to_numpy("datetime64[D]").astype(np.int64),
                             np.where(df["Type"].to_numpy() == "split", adj.SPLIT, adj.DIVIDEND),
                             np.where(df["Type"].to_numpy() == "split", df["Ratio"].to_numpy(),
                                      df["Amount"].to_numpy()))
        self._actions = (ident, acts)
        return acts

    def shares_as_of(self, as_of: dt.date) -> np.ndarray | None:
        """SharesOutstanding of every reference row as of ``as_of`` (the reference holds them
        as of the latest stored session L: divided by the splits with as_of < ExDate <= L), or
        None when no split lies in between (the reference's column as it is)."""
        last = self.store.last_session()
        if last is None or as_of >= last:
            return None
        ref = self.reference()
        prod = adj.split_product(ref["sid"].to_numpy(np.int32), self.actions(),
                                 int(np.datetime64(as_of, "D").astype(np.int64)),
                                 int(np.datetime64(last, "D").astype(np.int64)))
        if (prod == 1.0).all():
            return None
        return ref["SharesOutstanding"].to_numpy(np.float64) / prod

    def max_bars(self) -> int:
        """The most bars any symbol can have: the number of stored sessions. Requests for more
        (``days``, ``lookback_days``) are capped at it or refused by the front doors."""
        return len(self.store.stored_sessions())

    def symbols_panel(self, rows: np.ndarray | list[int], as_of: dt.date, n_bars: int,
                      adjust: str = adj.DEFAULT_MODE) -> Panel:
        """The last ``n_bars`` bars up to ``as_of`` of a few listings (``rows``: positions in
        :meth:`reference`), in that order, adjusted as of ``as_of`` in mode ``adjust``.

        For requests naming few symbols (up to :data:`FEW_SYMBOLS`): a query for just those
        symbols' bars, so a one-symbol request never builds a whole-market panel nor replaces
        the panel files beside the store. A whole-market panel of the same basis in memory
        serves it (the same bits: adjustment is per row and per bar).
        """
        mode = adj.check_mode(adjust)
        if n_bars < 1:
            raise ConfigError("days", f"must be >= 1, got {n_bars}")
        n_bars = min(n_bars, max(1, self.max_bars()))
        rows = np.asarray(rows, dtype=np.int64)
        base = (str(self.store.path), *self.store.identity(), as_of, mode)
        hit: Panel | None = self.memory.find(lambda k: k[:5] == base and k[5] >= n_bars)
        if hit is not None:
            p = hit.tail(n_bars).rows(rows)
            self._count(p, "memory")
            return p
        ref = self.reference()
        sids = ref["sid"].to_numpy(np.int32)[rows]
        with self.store.reading():
            bars = self.store.load_last_bars(sids, as_of, n_bars)
            acts = self.actions()
        none = {k: v[:0] for k, v in bars.items()}  # no date window: every row from ``bars``
        p = assemble(ref["Symbol"].to_numpy(object)[rows], sids, n_bars, as_of, none,
                     np.empty(0, dtype=np.int64), bars).adjusted(acts, mode)
        self._count(p, "store")
        return p

    def _fingerprint(self, as_of: dt.date, mode: str = adj.DEFAULT_MODE) -> str:
        """Names the data a panel is built from, identically on every instance: the dataset,
        the stored sessions up to ``as_of``, the listings and the adjustment basis (mode and
        the actions up to ``as_of``, by symbol)."""
        import hashlib

        sess = self.store.stored_sessions()
        sess = sess[sess <= np.datetime64(as_of, "D")]
        h = hashlib.sha256()
        h.update(self.provider.store_key.encode())
        h.update(sess.astype(np.int64).tobytes())
        h.update(mode.encode())
        acts = self.store.actions()
        acts = acts[acts["ExDate"].to_numpy("datetime64[D]") <= np.datetime64(as_of, "D")]
        h.update("\n".join(f"{s}|{d}|{t}|{r!r}|{a!r}" for s, d, t, r, a in zip(
            acts["Symbol"], acts["ExDate"].astype(str), acts["Type"], acts["Ratio"],
            acts["Amount"], strict=True)).encode())
        # A back-fill gives listings their history without changing sessions or listings.
        h.update((self.store.get_meta(BACKFILL) or "[]").encode())
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
        return replace(p, sids=ref["sid"].to_numpy(np.int32), adjust="none", raw=None,
                       actions=None)

    def _count(self, p: Panel, layer: str, rows: np.ndarray | None = None) -> None:
        count_panel(self._counters(), p, layer, rows)

    def _load_panel(self, as_of: dt.date, n_bars: int) -> Panel:
        ref = self.reference()
        sids = ref["sid"].to_numpy(np.int32)
        sess = self.sessions(as_of)
        margin = max(10, n_bars // 10)
        start = sess[max(0, len(sess) - n_bars - margin)].astype(dt.date) if len(sess) else as_of
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
        with self._accounting.lock:
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
        self._accounting.reset()
