"""L3: a Redis cache shared by every technic instance (optional: ``TECHNIC_REDIS_URL``).

What it holds, under ``technic:<store_key>:``
    ``bars:<YYYY-MM-DD>``              validated bars of one session (every listing), unadjusted
                                        (as traded; technic before layout 2 of the store wrote
                                        split-adjusted ``session:`` keys, never read now)
    ``actions``                         the vendor's corporate actions (splits, dividends) with
                                        ex-dates in the range it covers (one ledger that every
                                        instance's checks extend; with a TTL)
    ``reference:<YYYY-MM-DD>``          reference data as of a session (with a TTL)
    ``panel:<as_of>:<n_bars>:<fp>``     a loaded panel (fp fingerprints the data it came from)

Values are Arrow IPC streams (zstd-compressed), never pickle: a shared cache must not be a code
execution path. Redis being down, slow or flapping never fails a scan: the first error logs one
warning, the layer then stays off for ``cooldown_s`` before trying again, and every error is
counted (``errors``) for the stats.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from technic_v4.data.bars import BarBatch
from technic_v4.data.panel import FIELDS, Panel
from technic_v4.data.providers.base import ACTION_COLUMNS, REFERENCE_COLUMNS

log = logging.getLogger(__name__)

_IPC = pa.ipc.IpcWriteOptions(compression="zstd")


def _dumps(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _loads(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _frame(t: pa.Table, columns: tuple[str, ...]) -> pd.DataFrame:
    """A small frame technic wrote: it has ``columns`` (anything else is not ours)."""
    missing = set(columns) - set(t.column_names)
    if missing:
        raise ValueError(f"columns {t.column_names} lack {sorted(missing)}")
    return t.to_pandas()


class _Corrupt(Exception):
    """A value in Redis that does not decode: treated as a miss and counted as an error."""


class RedisLayer:
    """Get/put of sessions, reference data and panels; errors become misses (see module doc)."""

    def __init__(self, url: str, namespace: str, *, timeout_s: float = 1.0,
                 cooldown_s: float = 30.0, reference_ttl_s: int = 7 * 86400) -> None:
        import redis

        self.url = url
        self.prefix = f"technic:{namespace}:"
        self.cooldown_s = cooldown_s
        self.reference_ttl_s = reference_ttl_s
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                            socket_connect_timeout=timeout_s)
        self._errors_cls: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()
        self.errors = 0
        self.hits = 0
        self.misses = 0
        self.bytes_read = 0
        self.bytes_written = 0

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _call(self, what: str, fn: Any, default: Any) -> Any:
        if not self.available:
            return default
        try:
            return fn()
        except self._errors_cls as e:
            with self._lock:
                self.errors += 1
                self._down_until = time.monotonic() + self.cooldown_s
                if not self._warned:
                    self._warned = True
                    log.warning("Redis L3 at %s failed (%s: %s); going on without it for %.0f s "
                                "at a time", redact_url(self.url), what, type(e).__name__,
                                self.cooldown_s)
            return default

    def _count(self, hit: bool, nbytes: int = 0) -> None:
        with self._lock:
            if hit:
                self.hits += 1
                self.bytes_read += nbytes
            else:
                self.misses += 1

    def _decode(self, what: str, data: bytes, fn: Any) -> Any:
        """``fn(table)`` for a stored value, or None (a miss, counted as an error) when the
        value is not what technic writes: a shared cache must never fail a scan."""
        try:
            return fn(_loads(data))
        except (pa.ArrowException, KeyError, ValueError, TypeError, AttributeError,
                IndexError) as e:
            with self._lock:
                self.errors += 1
                self.misses += 1
            log.warning("Redis L3: undecodable %s value ignored (%s: %s)", what,
                        type(e).__name__, e)
            return None

    def ping(self) -> bool:
        return bool(self._call("ping", self._client.ping, False))

    # -- sessions ------------------------------------------------------------------------------
    def get_session_tables(self, days: np.ndarray) -> dict[np.datetime64, pa.Table]:
        """The shared sessions among ``days``, as Arrow tables (symbol, open..volume) of
        unadjusted bars: the fast path into the store, with no Python objects per row."""
        if len(days) == 0:
            return {}
        keys = [f"{self.prefix}bars:{d}" for d in days]
        values = self._call("get sessions", lambda: self._client.mget(keys), [None] * len(keys))
        out: dict[np.datetime64, pa.Table] = {}

        def session(t: pa.Table) -> pa.Table:
            if t.column_names != ["symbol", *FIELDS]:
                raise ValueError(f"unexpected columns {t.column_names}")
            if (t.schema.metadata or {}).get(b"bars") != b"unadjusted":
                raise ValueError("not unadjusted bars")
            return t

        for d, v in zip(days, values, strict=True):
            if v is None:
                self._count(False)
                continue
            got = self._decode("session", v, session)
            if got is not None:
                self._count(True, len(v))
                out[d] = got
        return out

    def put_sessions(self, batch: BarBatch, days: np.ndarray) -> None:
        """Store each of ``days`` (validated unadjusted bars) under its own key."""
        if len(days) == 0:
            return
        order = np.argsort(batch.date, kind="stable")
        dates = batch.date[order]
        bounds = np.searchsorted(dates, days, side="left")
        ends = np.searchsorted(dates, days, side="right")
        payload: dict[str, bytes] = {}
        for d, lo, hi in zip(days, bounds, ends, strict=True):
            sel = order[lo:hi]
            t = pa.table({"symbol": pa.array(batch.symbol[sel].astype(str)),
                          **{f: pa.array(getattr(batch, f)[sel]) for f in FIELDS}})
            t = t.replace_schema_metadata({"bars": "unadjusted"})
            payload[f"{self.prefix}bars:{d}"] = _dumps(t)
        with self._lock:
            self.bytes_written += sum(len(v) for v in payload.values())
        self._call("put sessions", lambda: self._client.mset(payload), None)

    # -- reference data and corporate actions (small frames under one key each) -----------------
    def _get_one(self, what: str, key: str, decode: Any) -> Any:
        v = self._call(f"get {what}", lambda: self._client.get(key), None)
        if v is None:
            self._count(False)
            return None
        got = self._decode(what, v, decode)
        if got is not None:
            self._count(True, len(v))
        return got

    def _put_frame(self, what: str, key: str, frame: pd.DataFrame) -> None:
        data = _dumps(pa.Table.from_pandas(frame, preserve_index=False))
        with self._lock:
            self.bytes_written += len(data)
        self._call(f"put {what}", lambda: self._client.set(key, data, ex=self.reference_ttl_s),
                   None)

    def get_reference(self, session: dt.date) -> pd.DataFrame | None:
        """Reference data as of ``session`` (keyed by it: listings change as sessions pass)."""
        return self._get_one("reference", f"{self.prefix}reference:{session}",
                             lambda t: _frame(t, REFERENCE_COLUMNS))

    def put_reference(self, ref: pd.DataFrame, session: dt.date) -> None:
        self._put_frame("reference", f"{self.prefix}reference:{session}", ref)

    def _actions_ledger(self) -> tuple[pd.DataFrame, dt.date, dt.date] | None:
        """The shared actions and the ex-date range they cover, or None."""

        def decode(t: pa.Table) -> tuple[pd.DataFrame, dt.date, dt.date]:
            meta = t.schema.metadata or {}
            lo = dt.date.fromisoformat(meta[b"from"].decode())
            hi = dt.date.fromisoformat(meta[b"through"].decode())
            return _frame(t, ACTION_COLUMNS), lo, hi

        got: tuple[pd.DataFrame, dt.date, dt.date] | None = self._get_one(
            "actions", f"{self.prefix}actions", decode)
        return got

    def get_actions(self, since: dt.date, through: dt.date) -> pd.DataFrame | None:
        """The corporate actions other instances fetched, with ex-dates ``since``..``through``
        (:data:`ACTION_COLUMNS`), when the shared ledger covers that whole range; else None."""
        got = self._actions_ledger()
        if got is None:
            return None
        frame, lo, hi = got
        if not (lo <= since and through <= hi):
            return None
        ex = pd.to_datetime(frame["ExDate"]).dt.date
        return frame[(ex >= since) & (ex <= through)].reset_index(drop=True)

    def put_actions(self, since: dt.date, through: dt.date, actions: pd.DataFrame) -> None:
        """Add what one check fetched (ex-dates ``since``..``through``) to the shared ledger:
        these rows replace the ledger's in that range when the ranges touch (a gap between them
        would hide actions: then the ledger starts again from this range). Rows without an
        ex-date are not shared (the store drops them). Two instances writing at once can lose
        one's extension: the next check then asks the vendor, nothing is wrong."""
        frame = pd.DataFrame({
            "Symbol": actions["Symbol"].astype(str).to_numpy(),
            "ExDate": pd.to_datetime(actions["ExDate"], errors="coerce").to_numpy(),
            "Type": actions["Type"].astype(str).to_numpy(),
            "Ratio": pd.to_numeric(actions["Ratio"], errors="coerce").astype(float).to_numpy(),
            "Amount": pd.to_numeric(actions["Amount"], errors="coerce").astype(float).to_numpy(),
        })
        frame = frame[frame["ExDate"].notna()]
        lo, hi = since, through
        old = self._actions_ledger()
        if old is not None:
            prev, p_lo, p_hi = old
            one_day = dt.timedelta(days=1)
            if p_lo <= through + one_day and since <= p_hi + one_day:
                ex = pd.to_datetime(prev["ExDate"]).dt.date
                keep = prev[(ex < since) | (ex > through)]
                frame = pd.concat([keep, frame], ignore_index=True) if len(keep) else frame
                lo, hi = min(lo, p_lo), max(hi, p_hi)
        frame = frame.sort_values(["ExDate", "Symbol", "Type"], kind="stable")
        t = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        t = t.replace_schema_metadata({"from": str(lo), "through": str(hi)})
        data = _dumps(t)
        with self._lock:
            self.bytes_written += len(data)
        self._call("put actions", lambda: self._client.set(
            f"{self.prefix}actions", data, ex=self.reference_ttl_s), None)

    # -- panels ----------------------------------------------------------------------------------
    def panel_key(self, as_of: dt.date, n_bars: int, fingerprint: str) -> str:
        return f"{self.prefix}panel:{as_of}:{n_bars}:{fingerprint}"

    def get_panel(self, key: str) -> Panel | None:
        return self._get_one("panel", key, self._panel_of)

    @staticmethod
    def _panel_of(t: pa.Table) -> Panel:
        meta = t.schema.metadata or {}
        n, n_bars = t.num_rows, int(meta[b"n_bars"])
        as_of = dt.date.fromisoformat(meta[b"as_of"].decode())
        if n_bars < 1 or set(t.column_names) != {"symbol", "sid", *FIELDS, "day"}:
            raise ValueError(f"not a panel: n_bars {n_bars}, columns {t.column_names}")

        def grid(name: str, dtype: Any) -> np.ndarray:
            flat = t.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            return np.ascontiguousarray(flat.astype(dtype, copy=False).reshape(n, n_bars))

        return Panel(symbols=np.asarray(t.column("symbol").to_pylist(), dtype=object),
                     sids=t.column("sid").to_numpy().astype(np.int32),
                     open=grid("open", np.float64), high=grid("high", np.float64),
                     low=grid("low", np.float64), close=grid("close", np.float64),
                     volume=grid("volume", np.float64), day=grid("day", np.int32), as_of=as_of)

    def put_panel(self, key: str, p: Panel, ttl_s: int = 86400) -> None:
        n, n_bars = p.close.shape

        def col(a: np.ndarray) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), n_bars)

        t = pa.table({"symbol": pa.array(p.symbols.astype(str)), "sid": pa.array(p.sids),
                      **{f: col(getattr(p, f)) for f in FIELDS}, "day": col(p.day)})
        t = t.replace_schema_metadata({"n_bars": str(n_bars), "as_of": str(p.as_of),
                                       "rows": str(n)})
        data = _dumps(t)
        with self._lock:
            self.bytes_written += len(data)
        self._call("put panel", lambda: self._client.set(key, data, ex=ttl_s), None)

    def clear(self) -> int:
        """Delete every key of this namespace; returns how many."""
        def run() -> int:
            n = 0
            for k in self._client.scan_iter(match=f"{self.prefix}*", count=1000):
                n += int(self._client.delete(k))
            return n
        return int(self._call("clear", run, 0))

    def stats(self) -> dict[str, Any]:
        return {"url": redact_url(self.url), "available": self.available, "hits": self.hits,
                "misses": self.misses, "errors": self.errors, "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written}


def redact_url(url: str) -> str:
    """``url`` without credentials, in every form redis-py accepts: ``user:pass@``, ``?password=``
    in the query, ``unix://`` paths. The one redaction used for logs, ``technic cache stats`` and
    ``/health``.

    A password may hold unescaped ``@``, ``/``, ``?``, ``#`` or ``:``, which move URL parsers'
    idea of where the host starts; so everything after ``://`` up to the LAST ``@`` is cut before
    parsing (at worst that hides a host, never shows a password)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    user = ""
    if "@" in rest:
        user, rest = "***@", rest.rpartition("@")[2]
    try:
        parts = urlsplit(f"//{rest}")
    except ValueError:
        return "<unparseable Redis URL>"
    query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return (f"{scheme}{sep}{user}{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
            + ("#***" if parts.fragment else ""))  # a '#' inside a ?password= value


_SECRET_PARAMS = frozenset({"password", "username", "user"})
