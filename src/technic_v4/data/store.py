"""The local store (L2): a DuckDB database file per provider dataset.

Tables
    symbols(sid, symbol, name, type, exchange, sector, industry, shares_outstanding, list_date)
    bars(sid, date, open, high, low, close, volume)      -- validated, adjusted daily bars
    sessions(date, rows, ingested_at)                     -- sessions whose grouped data is stored
    meta(key, value)                                      -- provider, version counter
    ingest_log(logged_at, sessions, rows_in, rows_kept, dropped) -- what validation dropped, and why

Writes are transactional: a batch of sessions is stored completely or not at all, so an
interrupted write leaves the store as it was before it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from technic_v4.data.bars import BarBatch, ValidationReport
from technic_v4.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS symbols (
    sid INTEGER PRIMARY KEY, symbol VARCHAR UNIQUE NOT NULL, name VARCHAR, type VARCHAR,
    exchange VARCHAR, sector VARCHAR, industry VARCHAR, shares_outstanding DOUBLE,
    list_date DATE);
CREATE TABLE IF NOT EXISTS bars (
    sid INTEGER NOT NULL, date DATE NOT NULL, open DOUBLE NOT NULL, high DOUBLE NOT NULL,
    low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (date DATE PRIMARY KEY, rows INTEGER, ingested_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS ingest_log (
    logged_at TIMESTAMP, first_session DATE, last_session DATE, n_sessions INTEGER, rows_in BIGINT,
    rows_kept BIGINT, dropped VARCHAR);
"""


class Store:
    """One DuckDB file. Thread-safe: every call takes the store's lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path))
            self._con.execute(SCHEMA)
        except (duckdb.Error, OSError) as e:
            raise StoreError(f"cannot open the local store at {self.path}: {e}. Set "
                             "TECHNIC_DATA_DIR to a writable directory, or stop the other "
                             "technic process that holds it.") from e
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # -- metadata -------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        # fetchall, not fetchone: an unfinished result blocks the connection for other threads.
        rows = self._con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        row = rows[0] if rows else None
        return None if row is None else str(row[0])

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._con.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                              "value = excluded.value", [key, value])

    @property
    def version(self) -> int:
        """Increments on every write; part of every cache key built on this store."""
        with self._lock:
            v = self._meta("version")
            return int(v) if v is not None else 0

    def stored_sessions(self) -> np.ndarray:
        """Sessions whose data is stored, as sorted ``datetime64[D]``."""
        with self._lock:
            rows = self._con.execute("SELECT date FROM sessions ORDER BY date").fetchnumpy()
        return np.asarray(rows["date"]).astype("datetime64[D]")

    def last_session(self) -> dt.date | None:
        s = self.stored_sessions()
        return None if len(s) == 0 else s[-1].astype(dt.date)

    # -- reference data ------------------------------------------------------------------------
    def reference(self) -> pd.DataFrame:
        """Reference data in sid order with the provider's column names."""
        with self._lock:
            df = self._con.execute(
                "SELECT sid, symbol AS Symbol, name AS Name, type AS Type, exchange AS Exchange, "
                "sector AS Sector, industry AS Industry, shares_outstanding AS SharesOutstanding, "
                "list_date AS ListDate FROM symbols ORDER BY sid").df()
        return df

    def upsert_reference(self, ref: pd.DataFrame) -> None:
        """Insert new symbols (new sids) and update the attributes of known ones."""
        with self._lock:
            known = self._con.execute("SELECT symbol, sid FROM symbols").fetchall()
            sid_of = dict(known)
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
            })
            with self._transaction(ref_in=df) as con:
                con.execute("DELETE FROM symbols WHERE sid IN (SELECT sid FROM ref_in)")
                con.execute("INSERT INTO symbols SELECT * FROM ref_in")

    @contextlib.contextmanager
    def _transaction(self, **tables: Any) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction (bumping ``version``) with ``tables`` registered as views;
        rolled back on any interruption, so the store is as it was before it."""
        with self._lock:
            for name, table in tables.items():
                self._con.register(name, table)
            try:
                self._con.execute("BEGIN TRANSACTION")
                yield self._con
                self._bump_version()
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            finally:
                for name in tables:
                    self._con.unregister(name)

    def _bump_version(self) -> None:
        self._con.execute(
            "INSERT INTO meta VALUES ('version', '1') ON CONFLICT (key) DO UPDATE SET "
            "value = CAST(CAST(meta.value AS BIGINT) + 1 AS VARCHAR)")

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
        with self._lock:
            ref = self._con.execute("SELECT symbol, sid FROM symbols").fetchnumpy()
            sid = pd.Index(ref["symbol"]).get_indexer(pd.Index(batch.symbol))
            known = sid >= 0
            if not known.all():
                report.dropped["unknown_symbol"] = (report.dropped.get("unknown_symbol", 0)
                                                    + int((~known).sum()))
                report.rows_kept -= int((~known).sum())
            sid_arr = np.asarray(ref["sid"])[sid[known]].astype(np.int32)
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
            with self._transaction(bars_in=tbl, sessions_in=sess_tbl) as con:
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
        with self._lock:
            sess_tbl = pa.table({"date": pa.array(sessions).cast(pa.date32())})
            with self._transaction(arrow_in=table, sessions_in=sess_tbl) as con:
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
        (re-fetched split-adjusted history); ``meta`` entries are written in the same one."""
        with self._lock:
            ref = self._con.execute("SELECT symbol, sid FROM symbols").fetchnumpy()
            index = pd.Index(ref["symbol"])
            pos = index.get_indexer(pd.Index(batch.symbol))
            keep = np.flatnonzero(pos >= 0)
            sid_of = np.asarray(ref["sid"])
            targets = sid_of[index.get_indexer(pd.Index(symbols))]
            tbl = pa.table({
                "sid": pa.array(sid_of[pos[keep]].astype(np.int32)),
                "date": pa.array(batch.date[keep]).cast(pa.date32()),
                **{f: pa.array(getattr(batch, f)[keep]) for f in
                   ("open", "high", "low", "close", "volume")},
            })
            targets_tbl = pa.table({"sid": pa.array(targets.astype(np.int32))})
            with self._transaction(bars_in=tbl, targets=targets_tbl) as con:
                con.execute("DELETE FROM bars WHERE sid IN (SELECT sid FROM targets) "
                            "AND date BETWEEN ? AND ?", [start, end])
                con.execute("INSERT INTO bars SELECT * FROM bars_in WHERE date BETWEEN ? AND ?",
                            [start, end])
                for k, v in (meta or {}).items():
                    con.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO "
                                "UPDATE SET value = excluded.value", [k, v])
            return len(keep)

    def bar_counts(self, symbols: list[str], start: dt.date, end: dt.date) -> dict[str, int]:
        """Stored bars per symbol in [start, end]."""
        with self._lock:
            self._con.register("wanted_syms", pa.table({"symbol": pa.array(symbols)}))
            try:
                rows = self._con.execute(
                    "SELECT s.symbol, count(*) FROM bars b JOIN symbols s USING (sid) "
                    "WHERE s.symbol IN (SELECT symbol FROM wanted_syms) AND b.date BETWEEN ? "
                    "AND ? GROUP BY s.symbol", [start, end]).fetchall()
            finally:
                self._con.unregister("wanted_syms")
        return {str(k): int(v) for k, v in rows}

    def sessions_batch(self, start: dt.date, end: dt.date) -> BarBatch:
        """Stored bars of [start, end] as a BarBatch with ticker symbols (to share via L3)."""
        with self._lock:
            res = self._con.execute(
                "SELECT s.symbol, b.date, b.open, b.high, b.low, b.close, b.volume FROM bars b "
                "JOIN symbols s USING (sid) WHERE b.date BETWEEN ? AND ?", [start, end]
            ).fetchnumpy()
        return BarBatch(np.asarray(res["symbol"], dtype=object),
                        np.asarray(res["date"]).astype("datetime64[D]"),
                        *(np.asarray(res[f], dtype=np.float64) for f in
                          ("open", "high", "low", "close", "volume")))

    def load_range(self, start: dt.date, end: dt.date) -> dict[str, np.ndarray]:
        """All bars with start <= date <= end: arrays sid, day (int days since 1970), OHLCV."""
        with self._lock:
            res = self._con.execute(
                "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume "
                "FROM bars WHERE date BETWEEN ? AND ?", [start, end]).fetchnumpy()
        return {k: np.asarray(v) for k, v in res.items()}

    def load_last_bars(self, sids: np.ndarray, end: dt.date, n: int) -> dict[str, np.ndarray]:
        """At least the last ``n`` bars up to ``end`` of each of ``sids`` (names with gaps)."""
        with self._lock:
            self._con.register("want", pa.table({"sid": pa.array(np.asarray(sids, np.int32))}))
            try:
                # Every bar up to ``end`` of these few symbols; the panel keeps the last n (a
                # window function here costs more than the rows it saves).
                res = self._con.execute(
                    "SELECT sid, (date - DATE '1970-01-01') AS day, open, high, low, close, volume "
                    "FROM bars WHERE sid IN (SELECT sid FROM want) AND date <= ?",
                    [end]).fetchnumpy()
            finally:
                self._con.unregister("want")
        return {k: np.asarray(v) for k, v in res.items()}

    def status(self) -> dict[str, Any]:
        with self._lock:
            n_bars, n_sym = self._con.execute(
                "SELECT count(*), count(DISTINCT sid) FROM bars").fetchall()[0]
            first_last = self._con.execute("SELECT min(date), max(date), count(*) FROM sessions"
                                           ).fetchall()[0]
        return {"path": str(self.path), "bars": int(n_bars), "symbols": int(n_sym),
                "first_session": first_last[0], "last_session": first_last[1],
                "sessions": int(first_last[2]), "version": self.version,
                "size_bytes": self.size_bytes()}

    def size_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + ".wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())
