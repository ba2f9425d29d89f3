"""The fetch planner: keeps the local store current with the provider in the fewest requests.

One update (:meth:`FetchPlanner.update`) runs, in order:

    1. missing sessions   every provider session the store lacks, from L3 when another
                          instance shared it, else from the vendor in groups (a failed group stays
                          missing and is retried by the next update)
    2. new listings       symbols that appear in the reference after their history began (a
                          ticker new to the vendor's list, a rename, a listing page that was
                          missing, a failed reference refresh) get the history the store
                          already covers: per-ticker or grouped requests, fewer requests wins
    3. corporate actions  splits and cash dividends with an ex-date since the last check, in one
                          incremental request (``provider.actions(since)``, or L3 when another
                          instance asked for the same range): a new split is one row of the
                          actions table, never a re-fetch of history (bars are stored as traded)

The planner writes to the store; reading panels is :class:`~technic_v4.data.market.MarketData`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from technic_v4.config.settings import Settings
from technic_v4.data import calendar
from technic_v4.data.bars import BarBatch, ValidationReport, validate
from technic_v4.data.cache import Counters
from technic_v4.data.providers.base import Provider
from technic_v4.data.store import Store
from technic_v4.errors import ProviderError, StoreBusy

if TYPE_CHECKING:
    from technic_v4.data.l3 import RedisLayer

log = logging.getLogger(__name__)

CHUNK_SESSIONS = 64  # sessions per store transaction during a fill
_STALL_FLUSH_S = 1.0  # ... or fewer, when the next request has kept us waiting this long
# Meta key: the last session whose corporate actions are stored (the next check asks for actions
# since the day after it). Absent: never checked (the first check starts at the first session).
ACTIONS = "actions_checked_through"
# Meta key: the first stored session when the actions were last checked. Sessions stored before
# it later (a vendor's history window moved back) have had no check: the next goes back to them.
ACTIONS_FROM = "actions_checked_from"
# Each check asks again for the last sessions the previous one covered: a vendor that publishes a
# dividend or split a few days late, or corrects one, is read the next day (the store replaces
# an action it already has; still one request per endpoint).
ACTIONS_OVERLAP_SESSIONS = 5
BACKFILL = "backfill_pending"  # meta key: JSON list of symbols whose history is still to fetch


@dataclass
class UpdateReport:
    """What one update did."""

    sessions_fetched: list[dt.date] = field(default_factory=list)
    rows_stored: int = 0
    validation: ValidationReport = field(default_factory=ValidationReport)
    reference_refreshed: bool = False
    reference_error: str | None = None  # the refresh failed: the previous reference was used
    failed: dict[str, str] = field(default_factory=dict)  # session -> why it is still missing
    actions_checked: str | None = None  # "<since>..<through>" of this update's actions check
    actions_stored: int = 0  # action rows stored (new or corrected)
    actions_dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows (not stored)
    actions_error: str | None = None  # the check failed: retried by the next update
    backfilled: list[str] = field(default_factory=list)  # new listings given their history
    backfill_plan: str | None = None
    backfill_error: str | None = None
    busy: str | None = None  # another process was updating: not waited for (a scan)

    def as_dict(self) -> dict[str, Any]:
        s = self.sessions_fetched
        return {"sessions_fetched": len(s), "first": str(s[0]) if s else None,
                "last": str(s[-1]) if s else None, "rows_stored": self.rows_stored,
                "validation": self.validation.as_dict(),
                "reference_refreshed": self.reference_refreshed,
                "reference_error": self.reference_error,
                "failed_sessions": dict(self.failed),
                "actions_checked": self.actions_checked, "actions_stored": self.actions_stored,
                "actions_dropped": dict(self.actions_dropped),
                "actions_error": self.actions_error,
                "backfilled": self.backfilled, "backfill_plan": self.backfill_plan,
                "backfill_error": self.backfill_error, "busy": self.busy}


class FetchPlanner:
    """Plans and runs the vendor (and L3) requests that bring the store up to date.

    ``counters()`` gives the current request's counters; ``reference()`` the stored reference
    data; ``stored_changed()`` is called after bars change (to drop derived caches).
    """

    def __init__(self, settings: Settings, provider: Provider, store: Store,
                 l3: RedisLayer | None, counters: Callable[[], Counters],
                 reference: Callable[[], pd.DataFrame],
                 stored_changed: Callable[[], None]) -> None:
        self.settings = settings
        self.provider = provider
        self.store = store
        self.l3 = l3
        self._counters = counters
        self._reference = reference
        self._stored_changed = stored_changed

    def update(self, through: dt.date | None, progress: bool,
               on_progress: Callable[[int, int], None] | None, wait: bool = True
               ) -> UpdateReport:
        """Fetch every provider session missing from the store up to ``through``, then the
        corporate actions since the last check (callers hold the update lock).

        With ``wait=False`` (scans: readers), an update another process is running is not
        waited for: the report says so (``busy``) and the caller reads what is stored. An empty
        store always waits (there is nothing to read yet)."""
        rep = UpdateReport()
        last = self.provider.latest_session()
        if through is not None:
            last = min(last, through)
        want = calendar.sessions_between(self.provider.first_session(), last)
        missing = np.setdiff1d(want, self.store.stored_sessions())
        if self.store.read_only:  # a read-only data dir serves what it holds
            why = f"not fetched: the local store at {self.store.path} is read-only"
            rep.failed.update(dict.fromkeys((str(d) for d in missing), why))
            return rep
        if not (len(missing) or self._actions_due() or self._pending()):
            return rep  # current: a pure reader, no writer lock
        wait = wait or len(self.store.stored_sessions()) == 0
        try:
            with self.store.writing(wait=wait):  # one writer across processes
                return self._update_locked(last, want, rep, progress, on_progress)
        except StoreBusy as e:  # only from writing(wait=False) itself: nested writes wait
            rep.busy = str(e)
            log.info("%s", e)
            return rep

    def _actions_due(self) -> bool:
        """Whether stored sessions are newer than the last corporate-actions check."""
        stored = self.store.stored_sessions()
        checked = self.store.get_meta(ACTIONS)
        return len(stored) > 0 and (checked is None or checked < str(stored[-1])
                                    or self._unchecked_before(stored))

    def _unchecked_before(self, stored: np.ndarray) -> bool:
        """Whether sessions were stored before the first one the last actions check covered."""
        since = self.store.get_meta(ACTIONS_FROM)
        return since is not None and str(stored[0].astype(dt.date)) < since

    def _update_locked(self, last: dt.date, want: np.ndarray, rep: UpdateReport, progress: bool,
                       on_progress: Callable[[int, int], None] | None) -> UpdateReport:
        """:meth:`update` under the store's writer lock (another writer may have filled some
        sessions while this one waited: they are re-read here)."""
        stored_before = self.store.stored_sessions()
        missing = np.setdiff1d(want, stored_before)
        if len(missing):
            # New sessions may bring new listings: refresh reference data first, so that
            # their bars have a symbol to belong to.
            known = set(self.store.reference()["Symbol"])
            self._refresh_reference(last, rep)
            if rep.reference_refreshed and len(stored_before):
                self._note_new_listings(known, stored_before)
            self._fill(missing, rep, progress, on_progress)
        self._backfill(stored_before, rep)
        self._update_actions(rep)
        return rep

    def _pending(self) -> list[str]:
        raw = self.store.get_meta(BACKFILL)
        return list(json.loads(raw)) if raw else []

    def _note_new_listings(self, known: set[str], stored: np.ndarray) -> None:
        """Remember (in the store, so an interrupted update retries) the listings new to the
        reference whose history began before the last stored session and did not end before
        the first one: the stored sessions lack their bars."""
        ref = self.store.reference()
        listed = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
        delisted = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]")
        # No list date: its history may be as old as the store's. A listing that stopped
        # trading before the first stored session (a vendor's list of delisted tickers) has no
        # bars to fill.
        old = (np.isnat(listed) | (listed <= stored[-1])) & ~(delisted < stored[0])
        new = [s for s in ref["Symbol"][old] if s not in known]
        if new:
            self.store.set_meta(BACKFILL, json.dumps(sorted({*self._pending(), *new})))

    def _backfill(self, stored_before: np.ndarray, rep: UpdateReport) -> None:
        """Fetch the history of pending new listings over the sessions stored before this
        update (the sessions it fetched already hold their bars).

        Per-ticker requests when fewer symbols than sessions to cover, else one grouped
        request per session; a failure leaves them pending for the next update.
        """
        pending = self._pending()
        if not pending or len(stored_before) == 0:
            return
        ref = self.store.reference()
        ref = ref[ref["Symbol"].isin(pending)]
        need = sorted(ref["Symbol"].astype(str))
        if not need:  # gone from the reference since
            self.store.set_meta(BACKFILL, "[]")
            return
        listed = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
        start = stored_before[0] if np.isnat(listed).any() else max(listed.min(),
                                                                     stored_before[0])
        sessions = stored_before[stored_before >= start]
        if len(sessions) == 0:  # listed after every stored session: new sessions bring its bars
            self.store.set_meta(BACKFILL, "[]")
            return
        first, last = sessions[0].astype(dt.date), sessions[-1].astype(dt.date)
        try:
            batch, rep.backfill_plan = self._history(need, sessions)
        except ProviderError as e:
            self._counters().errors += 1
            rep.backfill_error = (f"the history of {len(need)} new listing(s) could not be "
                                  f"fetched ({e}); the next update retries")
            log.warning("%s", rep.backfill_error)
            return
        batch = batch.take(np.flatnonzero(np.isin(batch.symbol, need)
                                          & np.isin(batch.date, sessions)))
        kept, vr = validate(batch)
        rep.validation.merge(vr)
        # Written with the pending list cleared, in one transaction: a listing the vendor has
        # no bars for is not asked again. Their corporate actions since ``first`` were dropped
        # as unknown symbols by earlier checks: the actions check goes back to ``first`` (one
        # request; rows already stored are replaced by themselves).
        meta = {BACKFILL: "[]"}
        checked = self.store.get_meta(ACTIONS)
        if checked is not None and checked >= str(first):
            meta[ACTIONS] = str(first - dt.timedelta(days=1))
        self.store.replace_symbols(kept, need, first, last, meta=meta)
        c = self._counters()
        c.fetched["vendor"] += vr.rows_kept
        c.refetched.update(need)
        rep.backfilled = need
        self._stored_changed()
        log.info("back-filled %d new listing(s) over %s..%s (%s): %d bars", len(need), first,
                 last, rep.backfill_plan, vr.rows_kept)

    def _history(self, symbols: list[str], sessions: np.ndarray) -> tuple[BarBatch, str]:
        """The bars of ``symbols`` over ``sessions`` in the fewest vendor requests: one per
        ticker when fewer symbols than sessions, else one grouped request per session (kept
        to ``symbols``). Returns the batch and the plan, for the report."""
        if len(symbols) <= len(sessions):
            first, last = sessions[0].astype(dt.date), sessions[-1].astype(dt.date)
            return (self.provider.bars_for_symbols(symbols, first, last),
                    f"{len(symbols)} per-ticker requests")
        batch = self.provider.bars_for_sessions([d.astype(dt.date) for d in sessions])
        return (batch.take(np.flatnonzero(np.isin(batch.symbol, symbols))),
                f"{len(sessions)} grouped requests")

    def _update_actions(self, rep: UpdateReport) -> None:
        """Store the corporate actions with an ex-date since the last check (and the last
        :data:`ACTIONS_OVERLAP_SESSIONS` sessions it covered), through the last stored session:
        one incremental request (or L3, when another instance asked for that range). Bad rows are dropped and counted, never stored; a failed request leaves
        bars and actions as they were, says so in ``rep`` and is retried by the next update.

        Actions dated after the last stored session are left for the check that stores that
        session (a vendor may still change or cancel an announced split)."""
        stored = self.store.stored_sessions()
        if len(stored) == 0:
            return
        first, last = stored[0].astype(dt.date), stored[-1].astype(dt.date)
        checked = self.store.get_meta(ACTIONS)
        since = dt.date.fromisoformat(checked) + dt.timedelta(days=1) if checked else first
        if self._unchecked_before(stored):
            since = first
        if since > last:
            return  # nothing new stored since the last check: no request
        if checked and since > first:  # re-read the tail of the last check (late publication)
            i = int(np.searchsorted(stored, np.datetime64(since, "D")))
            since = stored[max(0, i - ACTIONS_OVERLAP_SESSIONS)].astype(dt.date)
        rep.actions_checked = f"{since}..{last}"
        acts = self.l3.get_actions(since, last) if self.l3 is not None else None
        if acts is None:
            try:
                acts = self.provider.actions(since)
            except ProviderError as e:
                self._counters().errors += 1
                rep.actions_error = (f"corporate actions since {since} could not be fetched "
                                     f"({e}); the stored bars and actions are kept, so views "
                                     f"of dates from {since} on may miss a split or dividend; "
                                     "the next update retries")
                log.warning("%s", rep.actions_error)
                return
            ex = pd.to_datetime(acts["ExDate"], errors="coerce")
            acts = acts[~(ex > pd.Timestamp(last))].reset_index(drop=True)
            if self.l3 is not None:
                self.l3.put_actions(since, last, acts)
        counts = self.store.upsert_actions(acts)
        self.store.set_meta(ACTIONS, str(last))
        if self.store.get_meta(ACTIONS_FROM) != str(first):
            self.store.set_meta(ACTIONS_FROM, str(first))
        rep.actions_stored += counts.pop("stored", 0)
        for why, n in counts.items():
            rep.actions_dropped[why] = rep.actions_dropped.get(why, 0) + n
        if rep.actions_stored:
            self._stored_changed()
        log.info("corporate actions %s: %d stored%s", rep.actions_checked, rep.actions_stored,
                 f", dropped {counts}" if counts else "")

    def _refresh_reference(self, last: dt.date, rep: UpdateReport) -> None:
        """Store fresh reference data; when the vendor fails, keep the stored reference (and
        say so in ``rep``), unless there is none to keep."""
        try:
            ref = self._reference_for(last)
        except ProviderError as e:
            if len(self.store.reference()) == 0:
                raise ProviderError(f"reference data (the list of listings) could not be "
                                    f"fetched and the local store has none yet: {e}") from e
            self._counters().errors += 1
            rep.reference_error = (f"reference data could not be refreshed ({e}); the "
                                   "previous stored reference was used")
            log.warning("%s", rep.reference_error)
            return
        self.store.upsert_reference(ref)
        rep.reference_refreshed = True

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
              on_progress: Callable[[int, int], None] | None) -> None:
        """Store ``missing`` sessions: from L3 when shared, else from the provider in groups.

        A group the provider fails on is left missing (recorded in ``rep.failed``); the store
        is unchanged for it and the next update tries again.
        """
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
            pending.clear()

        with fill_progress(progress, self.provider) as bar, contextlib.ExitStack() as stack:
            task = bar.add_task(f"Storing {total} sessions", total=total)
            if self.l3 is not None:
                shared = self.l3.get_session_tables(missing)
                ordered = sorted(shared)
                for i in range(0, len(ordered), 4 * CHUNK_SESSIONS):
                    days = np.array(ordered[i:i + 4 * CHUNK_SESSIONS], dtype="datetime64[D]")
                    # Validated by the instance that shared it; Arrow straight into DuckDB.
                    tables = [shared[d].append_column(
                        "date", pa.array(np.full(shared[d].num_rows, d)).cast(pa.date32()))
                        for d in days]
                    table = pa.concat_tables(tables).select(
                        ["symbol", "date", "open", "high", "low", "close", "volume"])
                    n = self.store.append_arrow(table, days)
                    rep.rows_stored += n
                    rep.sessions_fetched.extend(d.astype(dt.date) for d in days)
                    c.fetched["redis"] += n
                    c.fetched_days.update(dict.fromkeys(days.astype(np.int64).tolist(), "redis"))
                    bar.advance(task, len(days))
                    if on_progress is not None:
                        on_progress(len(rep.sessions_fetched) + len(rep.failed), total)
                missing = np.setdiff1d(missing, np.array(ordered, dtype="datetime64[D]"))
            group = max(1, min(self.provider.fetch_batch_sessions, CHUNK_SESSIONS))
            groups = [missing[i:i + group] for i in range(0, len(missing), group)]
            # Vendors answer one session per request: keep a few requests in flight (I/O
            # bound), store them in order. A provider serving many sessions per call runs alone.
            workers = self.settings.fetch_concurrency if group == 1 else 1
            pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                      thread_name_prefix="technic-fetch")
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            stack.push(abandon_on_error(pool, self.provider))  # Ctrl-C: exit promptly

            def submit(g: np.ndarray) -> Future[BarBatch]:
                return pool.submit(self.provider.bars_for_sessions, [d.astype(dt.date) for d in g])

            # A bounded window of requests in flight: fetched batches wait in memory only until
            # they are stored, never the whole fill at once.
            ahead = 2 * max(1, workers)
            futures = deque(submit(g) for g in groups[:ahead])
            for i, sess in enumerate(groups):
                fut = futures.popleft()
                if i + ahead < len(groups):
                    futures.append(submit(groups[i + ahead]))
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
                    self.l3.put_sessions(kept, sess)
                # One store transaction per chunk of sessions, not per request.
                pending.append((sess, kept, vr))
                if sum(len(p[0]) for p in pending) >= CHUNK_SESSIONS:
                    flush()
            flush()
        self._stored_changed()  # panels of the old store version are unreachable anyway
        dropped = rep.validation.rows_dropped
        if dropped:
            log.info("validation dropped %d of %d rows: %s", dropped,
                     rep.validation.rows_in,
                     {k: v for k, v in rep.validation.dropped.items() if v})
