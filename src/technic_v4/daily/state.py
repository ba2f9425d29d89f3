"""The state store: what the user saved (screens, watchlists, alert targets) and what the daily
run did (runs, their outbox of notifications), in its own DuckDB file.

    <TECHNIC_DATA_DIR>/technic-state.duckdb

It is user data, not a cache: it lives beside the market stores but is not one of them, so
``technic cache clear --store`` and switching providers leave it alone.

Tables
    meta(key, value)                 schema_version
    screens(name, config, enabled, targets, created_at, updated_at)
        config: the ScanConfig fields as JSON (where/preset/columns/sort_by included);
        targets: a JSON list of alert target names
    watchlists(name, items, targets, created_at, updated_at)
        items: a JSON list of {symbol, entry, stop, target, size} (levels optional)
    targets(name, kind, spec, created_at, updated_at)
        spec: the target dict as JSON, secrets included (never returned by the API or CLI)
    runs(id, name, session, started_at, finished_at, status, catch_up, rows, changes)
        one per (name, session); name is a screen's, or ``watchlist:<name>``; rows: the
        screen's result (Symbol, Signal, TechRating, Entry, Stop, Target, PositionSize) as JSON;
        changes: entered/left/changed/touched as JSON
    outbox(id, run_id, target, payload, status, attempts, last_error, created_at, sent_at)
        one per (run, target); status pending -> sent, or dead after the sender's retries

Connections follow ``data/store.py``: no connection stays open; a read opens a short read-only
connection, a write a short read-write one inside one transaction (all or nothing) under a
cross-process lock (``technic-state.duckdb.lock``, ``filelock``). A connection that meets
another process's retries until it is free.

Migrations: ``MIGRATIONS`` is an ordered list of SQL scripts; ``meta.schema_version`` counts
those applied. Opening the store applies the missing ones in order, each in one transaction
with its version bump. To change the schema, append a script (never edit a released one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock

from technic_v4.errors import ConfigError, StoreError

FILENAME = "technic-state.duckdb"
LOCK_WAIT_S = 60.0

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE screens (
        name VARCHAR PRIMARY KEY, config VARCHAR NOT NULL, enabled BOOLEAN NOT NULL,
        targets VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
    CREATE TABLE watchlists (
        name VARCHAR PRIMARY KEY, items VARCHAR NOT NULL, targets VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
    CREATE TABLE targets (
        name VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, spec VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
    CREATE SEQUENCE run_ids START 1;
    CREATE TABLE runs (
        id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, session DATE NOT NULL,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL,
        catch_up BOOLEAN NOT NULL, rows VARCHAR NOT NULL, changes VARCHAR NOT NULL,
        UNIQUE (name, session));
    CREATE SEQUENCE outbox_ids START 1;
    CREATE TABLE outbox (
        id BIGINT PRIMARY KEY, run_id BIGINT NOT NULL, target VARCHAR NOT NULL,
        payload VARCHAR NOT NULL, status VARCHAR NOT NULL, attempts INTEGER NOT NULL,
        last_error VARCHAR, created_at TIMESTAMP NOT NULL, sent_at TIMESTAMP,
        UNIQUE (run_id, target));
    """,
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
RESULT_COLUMNS = ("Symbol", "Signal", "TechRating", "Entry", "Stop", "Target", "PositionSize")


class NotFound(ConfigError):
    """A saved screen, watchlist or alert target that does not exist (HTTP 404)."""


def check_name(value: Any, field: str = "name") -> str:
    """A saved thing's name: a slug (lowercase letters, digits, ``-``, ``_``; ≤ 64)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(field, f"{value!r} is not a valid name: use 1-64 lowercase letters, "
                          "digits, '-' or '_', starting with a letter or digit")
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _is_lock_conflict(e: duckdb.Error) -> bool:
    msg = str(e)
    return "Conflicting lock" in msg or "Could not set lock" in msg


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.RLock:
    """Held while this process has a connection to ``path`` open (DuckDB refuses a read-only
    and a read-write connection to one file in one process)."""
    key = str(path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    session: dt.date
    started_at: dt.datetime
    finished_at: dt.datetime
    status: str
    catch_up: bool
    rows: list[dict[str, Any]]
    changes: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        c = self.changes
        return {"id": self.id, "name": self.name, "session": self.session.isoformat(),
                "status": self.status, "catch_up": self.catch_up, "rows": len(self.rows),
                "entered": len(c.get("entered", [])), "left": len(c.get("left", [])),
                "changed": len(c.get("changed", [])), "touched": len(c.get("touched", [])),
                "finished_at": self.finished_at.isoformat(timespec="seconds")}


@dataclass(frozen=True)
class NewRun:
    """A run to store, with its outbox rows (target name, message payload)."""

    name: str
    session: dt.date
    started_at: dt.datetime
    catch_up: bool
    rows: list[dict[str, Any]]
    changes: dict[str, Any]
    outbox: list[tuple[str, dict[str, Any]]]
    status: str = "done"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    run_id: int
    target: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class StateStore:
    """The state store at ``<data_dir>/technic-state.duckdb`` (see module docstring)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / FILENAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.path.parent} for the state store: {e}; set "
                             "TECHNIC_DATA_DIR to a writable directory") from e
        self._plock = _process_lock(self.path)
        self._flock = FileLock(str(self.path) + ".lock", thread_local=False)
        self._migrate()

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.002
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as e:
                if not _is_lock_conflict(e):
                    raise StoreError(f"cannot open the state store at {self.path}: "
                                     f"{' '.join(str(e).split())}") from e
                if time.monotonic() > deadline:
                    raise StoreError(f"the state store at {self.path} stayed locked by another "
                                     f"process for {LOCK_WAIT_S:.0f} s; stop the process that "
                                     "holds it") from None
                time.sleep(pause)
                pause = min(pause * 1.5, 0.05)

    @contextlib.contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._plock:
            con = self._connect(read_only=True)
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction under the cross-process lock: committed whole or not at all."""
        with self._flock, self._plock:
            con = self._connect(read_only=False)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

    def _query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        with self._read() as con:
            return con.execute(sql, params or []).fetchall()

    # -- migrations ----------------------------------------------------------------------------
    def schema_version(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0][0]) if rows else 0

    def _migrate(self) -> None:
        if self.path.exists() and self.schema_version() == len(MIGRATIONS):
            return  # the usual case: a read, no write lock
        with self._flock:
            with self.transaction() as con:
                con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, "
                            "value VARCHAR)")
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise StoreError(f"the state store at {self.path} has schema version {current}, "
                                 f"newer than this technic ({len(MIGRATIONS)}): upgrade technic")
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                with self.transaction() as con:
                    con.execute(script)
                    con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) "
                                "DO UPDATE SET value = excluded.value", [str(version)])

    # -- screens ---------------------------------------------------------------------------------
    def put_screen(self, name: str, config: dict[str, Any], enabled: bool, targets: list[str],
                   replace: bool = False) -> None:
        check_name(name)
        with self.transaction() as con:
            self._check_targets(con, targets)
            exists = con.execute("SELECT created_at FROM screens WHERE name = ?",
                                 [name]).fetchall()
            if exists and not replace:
                raise ConfigError("name", f"a screen named {name!r} exists; remove it first")
            created = exists[0][0] if exists else _now()
            con.execute("DELETE FROM screens WHERE name = ?", [name])
            con.execute("INSERT INTO screens VALUES (?, ?, ?, ?, ?, ?)",
                        [name, json.dumps(config, sort_keys=True), enabled, json.dumps(targets),
                         created, _now()])

    def screens(self, enabled_only: bool = False) -> list[dict[str, Any]]:
        rows = self._query("SELECT name, config, enabled, targets, created_at, updated_at FROM "
                           "screens" + (" WHERE enabled" if enabled_only else "") +
                           " ORDER BY name")
        return [{"name": n, "config": json.loads(c), "enabled": bool(e),
                 "targets": json.loads(t), "created_at": ca, "updated_at": ua}
                for n, c, e, t, ca, ua in rows]

    def screen(self, name: str) -> dict[str, Any]:
        for s in self.screens():
            if s["name"] == name:
                return s
        raise NotFound("screen", f"no saved screen named {name!r}; saved: "
                          f"{', '.join(x['name'] for x in self.screens()) or 'none'}")

    def remove_screen(self, name: str) -> None:
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM screens WHERE name = ?", [name]).fetchall():
                raise NotFound("screen", f"no saved screen named {name!r}")
            con.execute("DELETE FROM screens WHERE name = ?", [name])

    # -- watchlists ------------------------------------------------------------------------------
    def put_watchlist(self, name: str, items: list[dict[str, Any]], targets: list[str],
                      replace: bool = False) -> None:
        check_name(name)
        with self.transaction() as con:
            self._check_targets(con, targets)
            exists = con.execute("SELECT created_at FROM watchlists WHERE name = ?",
                                 [name]).fetchall()
            if exists and not replace:
                raise ConfigError("name", f"a watchlist named {name!r} exists; remove it first")
            created = exists[0][0] if exists else _now()
            con.execute("DELETE FROM watchlists WHERE name = ?", [name])
            con.execute("INSERT INTO watchlists VALUES (?, ?, ?, ?, ?)",
                        [name, json.dumps(items), json.dumps(targets), created, _now()])

    def watchlists(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT name, items, targets, created_at, updated_at FROM watchlists "
                           "ORDER BY name")
        return [{"name": n, "items": json.loads(i), "targets": json.loads(t),
                 "created_at": ca, "updated_at": ua} for n, i, t, ca, ua in rows]

    def watchlist(self, name: str) -> dict[str, Any]:
        for w in self.watchlists():
            if w["name"] == name:
                return w
        raise NotFound("watchlist", f"no watchlist named {name!r}; saved: "
                          f"{', '.join(x['name'] for x in self.watchlists()) or 'none'}")

    def remove_watchlist(self, name: str) -> None:
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM watchlists WHERE name = ?", [name]).fetchall():
                raise NotFound("watchlist", f"no watchlist named {name!r}")
            con.execute("DELETE FROM watchlists WHERE name = ?", [name])

    # -- alert targets ---------------------------------------------------------------------------
    def put_target(self, spec: dict[str, Any], replace: bool = False) -> None:
        name = check_name(spec.get("name"))
        with self.transaction() as con:
            exists = con.execute("SELECT created_at FROM targets WHERE name = ?",
                                 [name]).fetchall()
            if exists and not replace:
                raise ConfigError("name", f"an alert target named {name!r} exists; remove it "
                                  "first")
            created = exists[0][0] if exists else _now()
            con.execute("DELETE FROM targets WHERE name = ?", [name])
            con.execute("INSERT INTO targets VALUES (?, ?, ?, ?, ?)",
                        [name, str(spec.get("kind")), json.dumps(spec), created, _now()])

    def targets(self) -> list[dict[str, Any]]:
        """Every target's dict, secrets included (for the sender; never shown as is)."""
        return [json.loads(s) for (s,) in self._query("SELECT spec FROM targets ORDER BY name")]

    def target(self, name: str) -> dict[str, Any]:
        rows = self._query("SELECT spec FROM targets WHERE name = ?", [name])
        if not rows:
            known = [t["name"] for t in self.targets()]
            raise NotFound("target", f"no alert target named {name!r}; saved: "
                              f"{', '.join(known) or 'none'}")
        return dict(json.loads(rows[0][0]))

    def remove_target(self, name: str) -> None:
        with self.transaction() as con:
            if not con.execute("SELECT 1 FROM targets WHERE name = ?", [name]).fetchall():
                raise NotFound("target", f"no alert target named {name!r}")
            users = [n for (n, t) in con.execute(
                "SELECT name, targets FROM screens UNION ALL SELECT 'watchlist:' || name, "
                "targets FROM watchlists").fetchall() if name in json.loads(t)]
            if users:
                raise ConfigError("target", f"alert target {name!r} is used by {', '.join(users)}"
                                  "; remove it from them first")
            con.execute("DELETE FROM targets WHERE name = ?", [name])

    @staticmethod
    def _check_targets(con: duckdb.DuckDBPyConnection, targets: list[str]) -> None:
        known = {n for (n,) in con.execute("SELECT name FROM targets").fetchall()}
        missing = [t for t in targets if t not in known]
        if missing:
            raise ConfigError("targets", f"no alert target named {missing[0]!r}; add it with "
                              "`technic alerts add` first (saved: "
                              f"{', '.join(sorted(known)) or 'none'})")

    # -- runs and the outbox -----------------------------------------------------------------------
    def run(self, name: str, session: dt.date) -> Run | None:
        rows = self._query("SELECT id, name, session, started_at, finished_at, status, catch_up, "
                           "rows, changes FROM runs WHERE name = ? AND session = ?",
                           [name, session])
        return _run(rows[0]) if rows else None

    def runs(self, name: str | None = None, limit: int = 50) -> list[Run]:
        where = "" if name is None else " WHERE name = ?"
        rows = self._query("SELECT id, name, session, started_at, finished_at, status, catch_up, "
                           f"rows, changes FROM runs{where} ORDER BY session DESC, name "
                           "LIMIT ?", ([] if name is None else [name]) + [limit])
        return [_run(r) for r in rows]

    def last_sessions(self) -> dict[str, dt.date]:
        """The latest session with a stored run, by name."""
        return {n: d for n, d in self._query("SELECT name, max(session) FROM runs GROUP BY name")}

    def runs_at(self, names: list[str], sessions: list[dt.date]
                ) -> dict[tuple[str, dt.date], Run]:
        """The stored runs of these names on these sessions, in one read."""
        if not names or not sessions:
            return {}
        rows = self._query(
            "SELECT id, name, session, started_at, finished_at, status, catch_up, rows, changes "
            "FROM runs WHERE list_contains(?, name) AND list_contains(?, session)",
            [names, sessions])
        return {(r.name, r.session): r for r in map(_run, rows)}

    def store_run(self, name: str, session: dt.date, started_at: dt.datetime, catch_up: bool,
                  rows: list[dict[str, Any]], changes: dict[str, Any],
                  outbox: list[tuple[str, dict[str, Any]]], status: str = "done") -> int | None:
        """The run and its outbox rows (target, payload) in one transaction. Returns the run id,
        or None when a run of (name, session) is already stored (nothing is written then)."""
        return self.store_runs([NewRun(name, session, started_at, catch_up, rows, changes,
                                       outbox, status)])[0]

    def store_runs(self, runs: list[NewRun]) -> list[int | None]:
        """Several runs with their outbox rows in one transaction (all or nothing); a run whose
        (name, session) is already stored is left out (None)."""
        texts = [(json.dumps(r.rows, default=_jsonable), json.dumps(r.changes, default=_jsonable),
                  [(t, json.dumps(p, default=_jsonable)) for t, p in r.outbox]) for r in runs]
        ids: list[int | None] = []
        with self.transaction() as con:
            for r, (rows, changes, outbox) in zip(runs, texts, strict=True):
                if con.execute("SELECT 1 FROM runs WHERE name = ? AND session = ?",
                               [r.name, r.session]).fetchall():
                    ids.append(None)
                    continue
                run_id = int(con.execute("SELECT nextval('run_ids')").fetchall()[0][0])
                con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [run_id, r.name, r.session, r.started_at, _now(), r.status,
                             r.catch_up, rows, changes])
                for target, payload in outbox:
                    con.execute("INSERT INTO outbox VALUES (nextval('outbox_ids'), ?, ?, ?, "
                                "'pending', 0, NULL, ?, NULL)", [run_id, target, payload, _now()])
                ids.append(run_id)
        return ids

    def outbox(self, status: str | None = None, limit: int = 1000) -> list[OutboxRow]:
        where = "" if status is None else " WHERE status = ?"
        rows = self._query("SELECT id, run_id, target, payload, status, attempts, last_error, "
                           f"created_at, sent_at FROM outbox{where} ORDER BY id LIMIT ?",
                           ([] if status is None else [status]) + [limit])
        return [OutboxRow(int(i), int(r), t, json.loads(p), s, int(a), e, c, sa)
                for i, r, t, p, s, a, e, c, sa in rows]

    def mark(self, outbox_id: int, status: str, attempts: int, error: str | None) -> None:
        """Record a delivery's outcome (sent, or dead with its one-line error)."""
        with self.transaction() as con:
            con.execute("UPDATE outbox SET status = ?, attempts = attempts + ?, last_error = ?, "
                        "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
                        [status, attempts, error, status, _now(), outbox_id])


def _run(r: tuple[Any, ...]) -> Run:
    i, n, s, sa, fa, st, cu, rows, ch = r
    return Run(int(i), n, s, sa, fa, st, bool(cu), json.loads(rows), json.loads(ch))


def _jsonable(v: Any) -> Any:
    """JSON for numpy scalars and dates (NaN is written as null by the callers)."""
    if isinstance(v, dt.date):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
