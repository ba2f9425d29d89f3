"""The local store (L2): a DuckDB database file per provider dataset.

Tables
    symbols(sid, symbol, name, type, exchange, sector, industry, shares_outstanding, list_date,
            delisted, delist_reason)                      -- every listing, delisted ones kept
    bars(sid, date, open, high, low, close, volume)      -- validated daily bars, UNADJUSTED
    actions(sid, ex_date, type, ratio, amount)           -- splits and cash dividends
    sessions(date, rows, ingested_at)                     -- sessions whose grouped data is stored
    meta(key, value)                                      -- provider, store id, version counter
    ingest_log(logged_at, sessions, rows_in, rows_kept, dropped) -- what validation dropped, and why

Bars are stored as traded (unadjusted); a split or a dividend is one row of ``actions`` and
views adjust as of the date they are about (``data/adjust.py``). ``meta.schema_version`` names
the layout; :data:`MIGRATIONS` bring an older store across when it is opened for writing.

Writes are transactional: a batch of sessions is stored completely or not at all, so an
interrupted write leaves the store as it was before it.

One store, many processes
    DuckDB lets one process write a file, or any number of processes read it, never both at
    once. So no process keeps a connection open: every read opens a short read-only connection,
    every write transaction a short read-write one. Writers (updates) first take a cross-process
    lock (``<store>.lock``, from ``filelock``) for as long as their update runs, so two updates
    take turns and the second logs that it is waiting. A read that meets a writer's connection
    retries until that transaction has committed; a writer that meets readers retries the same
    way (reads are short). Small things that every scan asks (version, store id, meta, stored
    sessions, reference data) are kept in memory and re-read only when the store's files change
    (``<store>.version``, rewritten after every write, and the database files' size and mtime);
    while a writer holds the file they are served from the previous version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from filelock import FileLock, Timeout

from technic_v4 import fsio
from technic_v4.data.bars import BarBatch, ValidationReport
from technic_v4.errors import StoreBusy, StoreError

log = logging.getLogger(__name__)

LOCK_WAIT_S = 120.0  # how long a read (or a writer's connection) waits for the file

SCHEMA = """
CREATE TABLE IF NOT EXISTS symbols (
    sid INTEGER PRIMARY KEY, symbol VARCHAR UNIQUE NOT NULL, name VARCHAR, type VARCHAR,
    exchange VARCHAR, sector VARCHAR, industry VARCHAR, shares_outstanding DOUBLE,
    list_date DATE, delisted DATE, delist_reason VARCHAR);
CREATE TABLE IF NOT EXISTS bars (
    sid INTEGER NOT NULL, date DATE NOT NULL, open DOUBLE NOT NULL, high DOUBLE NOT NULL,
    low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    sid INTEGER NOT NULL, ex_date DATE NOT NULL, type VARCHAR NOT NULL, ratio DOUBLE,
    amount DOUBLE, PRIMARY KEY (sid, ex_date, type));
CREATE TABLE IF NOT EXISTS sessions (date DATE PRIMARY KEY, rows INTEGER, ingested_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log (
    logged_at TIMESTAMP, first_session DATE, last_session DATE, n_sessions INTEGER, rows_in BIGINT,
    rows_kept BIGINT, dropped VARCHAR);
"""

# The layout written by this version. Schema 1 (before 2026-11-29) held bars split-adjusted
# through a date (meta ``adjusted_through``) and no actions: they cannot be un-adjusted without
# the splits they were adjusted for, so such a store is emptied and refilled (with a warning).
SCHEMA_VERSION = 2

# Actions: a split's ratio is new shares per old share (2-for-1: 2.0; 1-for-10 reverse: 0.1);
# a dividend's amount is cash per share as paid on its ex-date (unadjusted).
ACTION_TYPES = ("split", "dividend")
DELIST_REASONS = ("acquired", "bankrupt", "other")

_SET_META = ("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
             "value = excluded.value")


def _to_v2(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Schema 1 -> 2: split-adjusted bars cannot be un-adjusted without their splits, so the
    stored data is dropped (a new store id: every cache of the old data is dead) and the next
    update refills the store with unadjusted bars and the corporate actions."""
    rows = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'bars'"
                       ).fetchall()[0][0]
    if rows:
        log.warning("the local store at %s holds split-adjusted bars (layout 1); it was emptied "
                    "and the next update refills it with unadjusted bars and corporate actions",
                    path)
    for table in ("bars", "sessions", "symbols", "actions"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DELETE FROM meta WHERE key <> 'schema_version'")


# Target schema version -> the step that brings a store from the version before it there. A
# step runs inside the opening transaction, before SCHEMA creates whatever is still missing.
# To change the layout: bump SCHEMA_VERSION, write the step, add it here, test it on a store
# written by the previous version (tests/data/test_store_migrations.py).
MIGRATIONS: dict[int, Any] = {2: _to_v2}


class _Busy(Exception):
    """The file is held by another process's connection (internal: retried or served stale)."""


@dataclass
class _Shared:
    """Per database file, shared by every Store of this process on it."""

    lock: threading.RLock  # held while this process has a connection to the file open
    writer: threading.RLock  # one writing thread per process at a time
    file_lock: FileLock  # one writing process at a time


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared_for(path: Path) -> _Shared:
    key = str(path.resolve())
    with _SHARED_LOCK:
        sh = _SHARED.get(key)
        if sh is None:
            sh = _SHARED[key] = _Shared(threading.RLock(), threading.RLock(),
                                        FileLock(key + ".lock", thread_local=False))
        return sh


@dataclass(frozen=True)
class _Snapshot:
    """What every scan asks of the store, read in one connection (one version)."""

    key: tuple[Any, ...]  # the files' state it was read at
    meta: dict[str, str]
    sessions: np.ndarray

    @property
    def version(self) -> int:
        v = self.meta.get("version")
        return int(v) if v is not None else 0


def _is_lock_conflict(e: duckdb.Error) -> bool:
    msg = str(e)
    return "Conflicting lock" in msg or "Could not set lock" in msg


class Store:
    """One DuckDB file, shared safely by threads and processes (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._hint = self.path.with_name(self.path.name + ".version")
        self._local = threading.local()
        self._snapshot: _Snapshot | None = None
        # Derived reads (reference, actions, content digest) by name, with the identity read.
        self._derived: dict[str, tuple[tuple[str | None, int], Any]] = {}
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._shared = _shared_for(self.path)
            self.read_only = not self._writable()
            if not self.path.exists():
                if self.read_only:
                    raise StoreError(f"no local store at {self.path}, and its folder is "
                                     "read-only: set TECHNIC_DATA_DIR to a writable directory")
                self._create()
            else:
                self._check_schema()
        except (duckdb.Error, OSError) as e:
            raise StoreError(f"cannot open the local store at {self.path}: {e}. Set "
                             "TECHNIC_DATA_DIR to a writable directory.") from e

    def _writable(self) -> bool:
        folder = self.path.parent
        if not os.access(folder, os.W_OK):
            return False
        return not self.path.exists() or os.access(self.path, os.W_OK)

    def close(self) -> None:
        """Forget what is cached (no connection stays open between calls)."""
        self._snapshot = None
        self._derived = {}

    # -- connections ---------------------------------------------------------------------------
    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection to the file (one attempt); ``_Busy`` when another process holds it."""
        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            if _is_lock_conflict(e):
                raise _Busy(str(e)) from e
            if "not a valid DuckDB database" in str(e):
                raise StoreError(f"the local store at {self.path} is damaged (not a DuckDB "
                                 "database): delete it with `technic cache clear --store`; the "
                                 "next scan or update rebuilds it") from e
            raise

    def _connect(self, read_only: bool, wait: bool = True) -> duckdb.DuckDBPyConnection:
        """``_open`` retried while another process's connection holds the file."""
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.002
        while True:
            try:
                return self._open(read_only)
            except _Busy as e:
                if not wait:
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the local store at {self.path} stayed locked by another process for "
                        f"{LOCK_WAIT_S:.0f} s ({e}); stop the process that holds it") from None
                time.sleep(pause)
                pause = min(pause * 1.5, 0.05)

    @contextlib.contextmanager
    def _read(self, wait: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection pinned by ``reading``/a transaction, else a short read-only one."""
        pinned = getattr(self._local, "con", None)
        if pinned is not None:
            yield pinned
            return
        with self._shared.lock:
            con = self._connect(read_only=True, wait=wait)
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Every read of this thread inside the block sees one version of the store (one
        read-only connection; writers wait until the block ends, so keep it short)."""
        if getattr(self._local, "con", None) is not None:
            yield
            return
        try:
            with self._shared.lock:
                con = self._connect(read_only=True)
                try:
                    self._local.snap = self._load_snapshot(con, self._state_key())
                    self._local.con = con
                    yield
                finally:
                    self._local.con = None
                    self._local.snap = None
                    con.close()
        except duckdb.Error as e:
            raise StoreError(f"cannot read the local store at {self.path}: {e}") from e

    @contextlib.contextmanager
    def writing(self, wait: bool = True) -> Iterator[None]:
        """Hold the cross-process writer lock (re-entrant). Waits, and says so, while another
        process updates the store; with ``wait=False`` raises :class:`StoreBusy` instead."""
        if self.read_only:
            raise StoreError(f"the local store at {self.path} is read-only: set "
                             "TECHNIC_DATA_DIR to a writable directory to update it")
        sh = self._shared
        busy = (f"another process is updating the local store at {self.path}; read what is "
                "stored")
        if not sh.writer.acquire(blocking=wait):
            raise StoreBusy(busy)
        try:
            if not sh.file_lock.is_locked:
                try:
                    sh.file_lock.acquire(timeout=0)
                except Timeout:
                    if not wait:
                        raise StoreBusy(busy) from None
                    log.warning("waiting for another process that is updating the store at %s",
                                self.path)
                    sh.file_lock.acquire()
                    log.warning("the other update finished; continuing")
                except OSError as e:
                    raise StoreError(f"cannot lock the local store at {self.path} for writing: "
                                     f"{e}; set TECHNIC_DATA_DIR to a writable directory") from e
            else:
                sh.file_lock.acquire()  # re-entrant: counts
            try:
                yield
            finally:
                sh.file_lock.release()
        finally:
            sh.writer.release()

    def _state_key(self) -> tuple[Any, ...]:
        """Changes whenever the store's files do (cheap: a small read and two stats)."""

        def stat(p: Path) -> tuple[int, int, int] | None:
            try:
                s = p.stat()
            except FileNotFoundError:
                return None
            return (s.st_ino, s.st_size, s.st_mtime_ns)

        try:
            hint = self._hint.read_bytes()
        except OSError:
            hint = None
        return (hint, stat(self.path), stat(self.path.with_name(self.path.name + ".wal")))

    def _load_snapshot(self, con: duckdb.DuckDBPyConnection, key: tuple[Any, ...]) -> _Snapshot:
        meta = {str(k): str(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()}
        rows = con.execute("SELECT date FROM sessions ORDER BY date").fetchnumpy()
        sessions = np.asarray(rows["date"]).astype("datetime64[D]")
        sessions.setflags(write=False)
        snap = _Snapshot(key, meta, sessions)
        if getattr(self._local, "con", None) is not None and \
                getattr(self._local, "snap", None) is None:
            return snap  # inside this thread's write transaction: not committed, not shared
        old = self._snapshot
        if old is None or snap.version >= old.version or snap.meta.get("store_id") != \
                old.meta.get("store_id"):
            self._snapshot = snap
        return snap

    def _snap(self) -> _Snapshot:
        """The current snapshot; the previous one while a writer holds the file."""
        pinned = getattr(self._local, "snap", None)
        if pinned is not None:
            return pinned
        key = self._state_key()
        snap = self._snapshot
        if snap is not None and snap.key == key:
            return snap
        try:
            with self._read(wait=snap is None) as con:
                return self._load_snapshot(con, key)
        except _Busy:
            assert snap is not None
            return snap
        except duckdb.Error as e:
            raise StoreError(f"cannot read the local store at {self.path}: {e}") from e

    def _check_schema(self) -> None:
        """Bring an existing store to :data:`SCHEMA_VERSION` (or say why it cannot be)."""
        meta = self._snap().meta
        found = int(meta.get("schema_version", "1"))
        if found == SCHEMA_VERSION and meta.get("store_id") is not None:
            return
        if found > SCHEMA_VERSION:
            raise StoreError(f"the local store at {self.path} has layout {found}, written by a "
                             f"newer technic (this one reads layout {SCHEMA_VERSION}): upgrade "
                             "technic, or delete it with `technic cache clear --store`")
        if self.read_only:
            raise StoreError(f"the local store at {self.path} has layout {found}, this technic "
                             f"needs {SCHEMA_VERSION}: open it once with write access (a scan or "
                             "`technic data update`) to migrate it")
        self._create()

    def _create(self) -> None:
        """Create the tables, the store id and the schema version, or migrate an older store,
        in one transaction under the writer lock."""
        with self.writing(), self._shared.lock:
            con = self._connect(read_only=False)
            try:
                con.execute("BEGIN TRANSACTION")
                has_meta = con.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
                ).fetchall()[0][0]
                found = SCHEMA_VERSION
                if has_meta:
                    row = con.execute(
                        "SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
                    found = int(row[0][0]) if row else 1
                for version in sorted(MIGRATIONS):
                    if found < version:
                        MIGRATIONS[version](con, self.path)
                con.execute(SCHEMA)
                con.execute("INSERT INTO meta VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING",
                            [uuid.uuid4().hex])
                con.execute(_SET_META, ["schema_version", str(SCHEMA_VERSION)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.close()
            self._wrote()

    def _wrote(self) -> None:
        """After a commit: tell every process (and this one) that the files changed."""
        self._snapshot = None
        try:
            fsio.write_text(self._hint, f"{time.time_ns()} {os.getpid()}\n")
        except OSError as e:  # readers still see the database files' size and mtime change
            log.warning("could not write %s: %s", self._hint, e)

    @contextlib.contextmanager
    def _transaction(self, bump: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction (bumping ``version`` unless ``bump`` is false); rolled back
        on any interruption, so the store is as it was before it."""
        with self.writing(), self._shared.lock:
            try:
                con = self._connect(read_only=False)
            except duckdb.Error as e:
                raise StoreError(f"cannot write the local store at {self.path}: {e}") from e
            self._local.con = con
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    if bump:
                        con.execute(
                            "INSERT INTO meta VALUES ('version', '1') ON CONFLICT (key) DO UPDATE "
                            "SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS VARCHAR)")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                self._local.con = None
                con.close()
                self._wrote()

    # -- metadata -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self._snap().meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction(bump=False) as con:
            con.execute(_SET_META, [key, value])

    @property
    def version(self) -> int:
        """Increments on every write of bars or reference data (within one store id)."""
        return self._snap().version

    @property
    def store_id(self) -> str | None:
        """Created with the store: a new file (even at the same path) has a new id."""
        return self._snap().meta.get("store_id")

    def identity(self) -> tuple[str | None, int]:
        """``(store_id, version)`` of one snapshot: names the stored data exactly."""
        snap = self._snap()
        return snap.meta.get("store_id"), snap.version

    def stored_sessions(self) -> np.ndarray:
        """Sessions whose data is stored, as sorted ``datetime64[D]`` (read-only array)."""
        return self._snap().sessions

    def last_session(self) -> dt.date | None:
        s = self.stored_sessions()
        return None if len(s) == 0 else s[-1].astype(dt.date)

    def fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """A read-only query (for inspection and tests)."""
        with self._read() as con:
            return con.execute(sql, params or []).fetchall()

    def fetch_df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """A read-only query as a DataFrame (for inspection and tests)."""
        with self._read() as con:
            return con.execute(sql, params or []).df()

    # -- reference data ------------------------------------------------------------------------
    def _per_version(self, name: str, load: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """``load(con)`` read in one version of the store, cached until the version moves."""
        ident = self.identity()
        cached = self._derived.get(name)
        if cached is not None and cached[0] == ident:
            return cached[1]
        with self.reading():
            ident = self.identity()
            with self._read() as con:
                value = load(con)
        self._derived[name] = (ident, value)
        return value

    def reference(self) -> pd.DataFrame:
        """Reference data in sid order with the provider's column names (shared: do not modify)."""
        df: pd.DataFrame = self._per_version("reference", lambda con: con.execute(
            "SELECT sid, symbol AS Symbol, name AS Name, type AS Type, exchange AS "
            "Exchange, sector AS Sector, industry AS Industry, shares_outstanding AS "
            "SharesOutstanding, list_date AS ListDate, delisted AS Delisted, "
            "delist_reason AS DelistReason FROM symbols ORDER BY sid").df())
        return df

    def actions(self) -> pd.DataFrame:
        """Every stored corporate action, by sid then ex-date: columns sid, Symbol, ExDate
        (datetime64[D]), Type (``split``/``dividend``), Ratio, Amount (cached per version;
        shared: do not modify)."""

        def load(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            df = con.execute(
                "SELECT a.sid, s.symbol AS Symbol, a.ex_date AS ExDate, a.type AS Type, "
                "a.ratio AS Ratio, a.amount AS Amount FROM actions a JOIN symbols s "
                "USING (sid) ORDER BY a.sid, a.ex_date, a.type").df()
            df["ExDate"] = pd.to_datetime(df["ExDate"]).to_numpy("datetime64[D]")
            return df

        df: pd.DataFrame = self._per_version("actions", load)
        return df

    def upsert_actions(self, actions: pd.DataFrame) -> dict[str, int]:
        """Store corporate actions (columns Symbol, ExDate, Type, Ratio, Amount; one row per
        action); a stored action with the same (symbol, ex-date, type) is replaced (a vendor's
        correction). Rows that cannot be right are dropped and counted, never stored: unknown
        symbol, unknown type, a split ratio or dividend amount that is not a positive finite
        number, a missing ex-date. Returns the counts of dropped rows by reason (and
        ``stored``). The version moves only when something was stored."""
        df = pd.DataFrame({
            "Symbol": actions["Symbol"].astype(str).to_numpy(),
            "ExDate": pd.to_datetime(actions["ExDate"], errors="coerce"),
            "Type": actions["Type"].astype(str).str.lower().to_numpy(),
            "Ratio": pd.to_numeric(actions["Ratio"], errors="coerce").astype(float).to_numpy(),
            "Amount": pd.to_numeric(actions["Amount"], errors="coerce").astype(float).to_numpy(),
        })
        counts: dict[str, int] = {}

        def drop(mask: np.ndarray, why: str) -> None:
            nonlocal df
            n = int(mask.sum())
            if n:
                counts[why] = counts.get(why, 0) + n
                df = df[~mask]

        drop(df["ExDate"].isna().to_numpy(), "missing_ex_date")
        drop(~df["Type"].isin(ACTION_TYPES).to_numpy(), "unknown_type")
        is_split = (df["Type"] == "split").to_numpy()
        value = np.where(is_split, df["Ratio"].to_numpy(), df["Amount"].to_numpy())
        drop(~(np.isfinite(value) & (value > 0)), "bad_value")
        with self.writing():
            sid = pd.Index(self.reference()["Symbol"]).get_indexer(pd.Index(df["Symbol"]))
            drop(sid < 0, "unknown_symbol")
            sid = sid[sid >= 0]
            ref_sids = self.reference()["sid"].to_numpy(np.int32)
            is_split = (df["Type"] == "split").to_numpy()
            tbl = pa.table({
                "sid": pa.array(ref_sids[sid]),
                "ex_date": pa.array(df["ExDate"].to_numpy("datetime64[D]")).cast(pa.date32()),
                "type": pa.array(df["Type"].to_numpy().astype(str)),
                "ratio": pa.array(np.where(is_split, df["Ratio"].to_numpy(), np.nan),
                                  from_pandas=True),
                "amount": pa.array(np.where(is_split, np.nan, df["Amount"].to_numpy()),
                                   from_pandas=True),
            })
            counts["stored"] = tbl.num_rows
            if tbl.num_rows:
                with self._transaction() as con:
                    con.register("actions_in", tbl)
                    con.execute("INSERT OR REPLACE INTO actions SELECT DISTINCT ON (sid, ex_date, "
                                "type) * FROM actions_in")
        return counts

    def upsert_reference(self, ref: pd.DataFrame) -> None:
        """Insert new symbols (new sids) and update the attributes of known ones."""
        with self._transaction() as con:
            sid_of = dict(con.execute("SELECT symbol, sid FROM symbols").fetchall())
            next_sid = max(sid_of.values(), default=-1) + 1
            sids = []
            for s in ref["Symbol"]:
                if s not in sid_of:
                    sid_of[s] = next_sid
                    next_sid += 1
                sids.append(sid_of[s])
            df = pd.DataFrame({
                "sid": np.asarray(sids, dtype=np.int32), "symbol": ref["Symbol"].astype(str),
                "name": ref["Name"], "type": ref["Type"], "exchange": ref["Exchange"],
                "sector": ref["Sector"], "industry": ref["Industry"],
                "shares_outstanding": ref["SharesOutstanding"].astype(float),
                "list_date": pd.to_datetime(ref["ListDate"]).dt.date,
                # Providers that know delistings add Delisted (the last session traded) and
                # DelistReason (one of DELIST_REASONS); missing: still listed.
                "delisted": (pd.to_datetime(ref["Delisted"]) if "Delisted" in ref else
                             pd.Series(pd.NaT, index=ref.index, dtype="datetime64[ns]")),
                "delist_reason": (ref["DelistReason"].astype(object) if "DelistReason" in ref
                                  else pd.Series(None, index=ref.index, dtype=object)),
            })
            con.register("ref_in", df)
            con.execute("DELETE FROM symbols WHERE sid IN (SELECT sid FROM ref_in)")
            con.execute("INSERT INTO symbols SELECT sid, symbol, name, type, exchange, sector, "
                        "industry, shares_outstanding, list_date, CAST(delisted AS DATE), "
                        "delist_reason FROM ref_in")

    # -- bars -------------------------------------------------------------------------------------
    def append_sessions(self, batch: BarBatch, sessions: np.ndarray,
                        report: ValidationReport) -> int:
        """Store validated bars for ``sessions`` in one transaction; returns rows stored.

        Bars for a session already stored replace the old ones (a re-fetch after a split).
        Symbols unknown to the reference data are not stored (counted as ``unknown_symbol``).
        """
        sessions = np.unique(np.asarray(sessions, dtype="datetime64[D]"))
        stray = ~np.isin(batch.date, sessions)
        if stray.any():
            raise ValueError(f"{int(stray.sum())} bars fall outside the sessions being stored "
                             f"(first: {batch.date[stray][0]}); pass every session they cover")
        with self.writing():  # the reference read here is then the one the write sees
            ref = self.reference()
            sid = pd.Index(ref["Symbol"]).get_indexer(pd.Index(batch.symbol))
            known = sid >= 0
            if not known.all():
                report.dropped["unknown_symbol"] = (report.dropped.get("unknown_symbol", 0)
                                                    + int((~known).sum()))
                report.rows_kept -= int((~known).sum())
            sid_arr = ref["sid"].to_numpy(np.int32)[sid[known]]
            sub = batch.take(np.flatnonzero(known))
            order = np.lexsort((sid_arr, sub.date))  # date-major: zone maps prune by date
            tbl = pa.table({
                "sid": pa.array(sid_arr[order]),
                "date": pa.array(sub.date[order]).cast(pa.date32()),
                **{f: pa.array(getattr(sub, f)[order]) for f in
                   ("open", "high", "low", "close", "volume")},
            })
            counts = pd.Series(sub.date).value_counts()
            sess_df = pd.DataFrame({
                "date": pd.to_datetime(sessions).date,
                "rows": [int(counts.get(s, 0)) for s in sessions],
                "ingested_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
            })
            sess_tbl = pa.Table.from_pandas(sess_df, preserve_index=False)
            # The file is held only while the prepared tables are written.
            with self._transaction() as con:
                con.register("bars_in", tbl)
                con.register("sessions_in", sess_tbl)
                con.execute("DELETE FROM bars WHERE date IN (SELECT date FROM sessions_in)")
                con.execute("DELETE FROM sessions WHERE date IN (SELECT date FROM sessions_in)")
                con.execute("INSERT INTO bars SELECT * FROM bars_in")
                con.execute("INSERT INTO sessions SELECT * FROM sessions_in")
                con.execute(
                    "INSERT INTO ingest_log VALUES (now(), ?, ?, ?, ?, ?, ?)",
                    [sessions[0].astype(dt.date), sessions[-1].astype(dt.date), len(sessions),
                     report.rows_in, report.rows_kept, json.dumps(report.dropped)])
        return len(sub)

    def append_arrow(self, table: pa.Table, sessions: np.ndarray) -> int:
        """Store already-validated bars (columns symbol, date, open..volume; e.g. shared by
        another instance through L3) for ``sessions`` in one transaction; DuckDB maps symbols to
        ids itself. Returns rows stored (rows of unknown symbols are not stored)."""
        sessions = np.unique(np.asarray(sessions, dtype="datetime64[D]"))
        sess_tbl = pa.table({"date": pa.array(sessions).cast(pa.date32())})
        with self._transaction() as con:
            con.register("arrow_in", table)
            con.register("sessions_in", sess_tbl)
            con.execute("DELETE FROM bars WHERE date IN (SELECT date FROM sessions_in)")
            con.execute("DELETE FROM sessions WHERE date IN (SELECT date FROM sessions_in)")
            n = con.execute(
                "INSERT INTO bars SELECT s.sid, a.date, a.open, a.high, a.low, a.close, "
                "a.volume FROM arrow_in a JOIN symbols s ON s.symbol = a.symbol "
                "ORDER BY a.date, s.sid").fetchall()[0][0]
            con.execute(
                "INSERT INTO sessions SELECT a.date, count(*), now() FROM arrow_in a "
                "JOIN symbols s ON s.symbol = a.symbol GROUP BY a.date")
        return int(n)

    def replace_symbols(self, batch: BarBatch, symbols: list[str], start: dt.date,
                        end: dt.date, meta: dict[str, str] | None = None) -> int:
        """Replace every bar of ``symbols`` in [start, end] by ``batch`` in one transaction
        (re-fetched split-adjusted history); ``meta`` entries are written in the same one.
        The version moves even when the new bars match the old ones one for one."""
        tbl = pa.table({
            "symbol": pa.array(np.asarray(batch.symbol).astype(str)),
            "date": pa.array(batch.date).cast(pa.date32()),
            **{f: pa.array(getattr(batch, f)) for f in ("open", "high", "low", "close", "volume")},
        })
        targets_tbl = pa.table({"symbol": pa.array([str(s) for s in symbols])})
        with self._transaction() as con:
            con.register("bars_in", tbl)
            con.register("targets", targets_tbl)
            con.execute("DELETE FROM bars WHERE sid IN (SELECT s.sid FROM symbols s JOIN targets t "
                        "ON s.symbol = t.symbol) AND date BETWEEN ? AND ?", [start, end])
            n = con.execute(
                "INSERT INTO bars SELECT s.sid, a.date, a.open, a.high, a.low, a.close, a.volume "
                "FROM bars_in a JOIN symbols s ON s.symbol = a.symbol "
                "WHERE a.date BETWEEN ? AND ?", [start, end]).fetchall()[0][0]
            for k, v in (meta or {}).items():
                con.execute(_SET_META, [k, v])
        return int(n)

    def bar_counts(self, symbols: list[str], start: dt.date, end: dt.date) -> dict[str, int]:
        """Stored bars per symbol in [start, end]."""
        with self._read() as con:
            con.register("wanted_syms", pa.table({"symbol": pa.array(symbols)}))
            try:
                rows = con.execute(
                    "SELECT s.symbol, count(*) FROM bars b JOIN symbols s USING (sid) "
                    "WHERE s.symbol IN (SELECT symbol FROM wanted_syms) AND b.date BETWEEN ? "
                    "AND ? GROUP BY s.symbol", [start, end]).fetchall()
            finally:
                con.unregister("wanted_syms")
        return {str(k): int(v) for k, v in rows}

    def sessions_batch(self, start: dt.date, end: dt.date) -> BarBatch:
        """Stored bars of [start, end] as a BarBatch with ticker symbols (to share via L3)."""
        with self._read() as con:
            res = con.execute(
                "SELECT s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume FROM bars b "
                "JOIN symbols s USING (sid) WHERE b.date BETWEEN ? AND ?", [start, end]
            ).fetchnumpy()
        return BarBatch(np.asarray(res["symbol"], dtype=object),
                        np.asarray(res["date"]).astype("datetime64[D]"),
                        *(np.asarray(res[f], dtype=np.float64) for f in
                          ("open", "high", "low", "close", "volume")))

    def load_range(self, start: dt.date, end: dt.date) -> dict[str, np.ndarray]:
        """All bars with start <= date <= end: arrays sid, day (int days since 1970), OHLCV."""
        with self._read() as con:
            res = con.execute(
                "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume "
                "FROM bars WHERE date BETWEEN ? AND ?", [start, end]).fetchnumpy()
        return {k: np.asarray(v) for k, v in res.items()}

    def load_last_bars(self, sids: np.ndarray, end: dt.date, n: int) -> dict[str, np.ndarray]:
        """At least the last ``n`` bars up to ``end`` of each of ``sids`` (names with gaps)."""
        with self._read() as con:
            con.register("want", pa.table({"sid": pa.array(np.asarray(sids, np.int32))}))
            try:
                # Every bar up to ``end`` of these few symbols; the panel keeps the last n (a
                # window function here costs more than the rows it saves).
                res = con.execute(
                    "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume "
                    "FROM bars WHERE sid IN (SELECT sid FROM want) AND date <= ?",
                    [end]).fetchnumpy()
            finally:
                con.unregister("want")
        return {k: np.asarray(v) for k, v in res.items()}

    def content(self) -> str:
        """A digest of every stored bar and listing, independent of row order: equal stores
        have equal digests, and any change of a stored value changes it (cached per version)."""

        def load(con: duckdb.DuckDBPyConnection) -> str:
            bars, syms, acts = con.execute(
                "SELECT (SELECT bit_xor(hash(s.symbol, b.date, b.open, b.high, b.low, "
                "b.close, b.volume)) FROM bars b JOIN symbols s USING (sid)), "
                "(SELECT bit_xor(hash(symbol, name, type, exchange, sector, industry, "
                "shares_outstanding, list_date, delisted, delist_reason)) FROM symbols), "
                "(SELECT bit_xor(hash(s.symbol, a.ex_date, a.type, a.ratio, a.amount)) "
                "FROM actions a JOIN symbols s USING (sid))").fetchall()[0]
            return f"{bars or 0:016x}{syms or 0:016x}{acts or 0:016x}"

        digest: str = self._per_version("content", load)
        return digest

    def status(self) -> dict[str, Any]:
        with self.reading():
            snap = self._snap()
            with self._read() as con:
                n_bars, n_sym = con.execute(
                    "SELECT count(*), count(DISTINCT sid) FROM bars").fetchall()[0]
        s = snap.sessions
        return {"path": str(self.path), "store_id": snap.meta.get("store_id"),
                "bars": int(n_bars), "symbols": int(n_sym),
                "first_session": s[0].astype(dt.date) if len(s) else None,
                "last_session": s[-1].astype(dt.date) if len(s) else None,
                "sessions": len(s), "version": snap.version, "size_bytes": self.size_bytes()}

    def size_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + ".wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())
