"""The Panel: aligned bar arrays (symbols x bars) plus their symbol and date axes.

Orientation is fixed everywhere: ``(n_symbols, n_bars)``, oldest bar first. Each row holds that
symbol's own last ``n_bars`` bars up to the as-of session, right-aligned, with NaN padding on the
left when it has fewer. Rows are therefore exactly the bars ``get_price_history_batch`` returns,
and indicator kernels see what TA-Lib would see for that symbol. ``day`` holds each bar's date as
int days since 1970-01-01 (-1 in padding).

Prices are adjusted as of ``as_of`` (the basis) in the panel's ``adjust`` mode
(``data/adjust.py``); ``raw`` keeps the as-traded bars of the few rows an action changed, so a
view as of an earlier session (:meth:`Panel.at`) re-adjusts exactly those rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from technic_v4 import fsio
from technic_v4.data import adjust as adj
from technic_v4.data.adjust import Actions, RawRows

FIELDS = ("open", "high", "low", "close", "volume")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Panel:
    symbols: np.ndarray  # (N,) object: tickers
    sids: np.ndarray  # (N,) int32: store ids
    open: np.ndarray  # (N, L) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    day: np.ndarray  # (N, L) int32: bar date as days since epoch, -1 where padded
    as_of: dt.date  # also the adjustment basis
    adjust: str = "none"  # the adjustment mode (adjust.MODES); assemble() builds raw panels
    raw: RawRows | None = None  # raw bars of the rows the adjustment changed
    actions: Actions | None = None  # what the panel was adjusted with (None: raw panel)

    @property
    def n_bars(self) -> np.ndarray:
        """Number of real bars in each row."""
        return (self.day >= 0).sum(axis=1)

    @property
    def last_day(self) -> np.ndarray:
        return self.day[:, -1]

    @property
    def nbytes(self) -> int:
        return (sum(getattr(self, f).nbytes for f in (*FIELDS, "day")) + self.symbols.nbytes
                + (self.raw.nbytes if self.raw is not None else 0))

    def rows(self, idx: np.ndarray) -> Panel:
        """A panel of the given rows (a copy)."""
        picked: dict[str, Any] = {f: getattr(self, f)[idx]
                                  for f in ("symbols", "sids", *FIELDS, "day")}
        raw = None if self.raw is None else self.raw.take(idx, len(self.sids))
        return replace(self, raw=raw, **picked)

    def tail(self, n: int) -> Panel:
        """The last ``n`` bars of every row."""
        if n >= self.day.shape[1]:
            return self
        cut: dict[str, Any] = {f: np.ascontiguousarray(getattr(self, f)[:, -n:])
                               for f in (*FIELDS, "day")}
        return replace(self, raw=None if self.raw is None else self.raw.tail(n), **cut)

    def adjusted(self, actions: Actions, mode: str) -> Panel:
        """This raw panel adjusted as of its ``as_of`` in ``mode``. Its arrays are adjusted in
        place, only in the rows an action changes (none: nothing is copied or written)."""
        if self.adjust != "none" or self.raw is not None:
            raise ValueError(f"adjusted() needs a raw panel, not one adjusted ({self.adjust})")
        if mode == "none":
            return replace(self, actions=actions)
        arrays = {f: getattr(self, f) for f in FIELDS}
        basis = int(np.datetime64(self.as_of, "D").astype(np.int64))
        if len(adj.affected(self.sids, self.day, actions.of_mode(mode), basis)):
            for f in FIELDS:  # e.g. decoded from L3 or mapped from files: write a copy
                if not arrays[f].flags.writeable:
                    arrays[f] = arrays[f].copy()
        raw = adj.apply(arrays, self.sids, self.day, actions, basis, mode)
        return replace(self, adjust=mode, raw=raw, actions=actions, **arrays)

    def unadjusted(self) -> Panel:
        """The raw panel this one was adjusted from (what L3 shares: any instance adjusts it
        with its own store's actions). No copy when no row was changed."""
        if self.raw is None:
            return replace(self, adjust="none", actions=None)
        arrays = {f: getattr(self, f).copy() for f in FIELDS}
        for f in FIELDS:
            arrays[f][self.raw.rows] = getattr(self.raw, f)
        return replace(self, adjust="none", raw=None, actions=None, **arrays)

    def at(self, day: dt.date, n: int) -> Panel:
        """The panel as of an earlier session: each row's last ``n`` bars dated <= ``day``,
        adjusted as of ``day``.

        Equal (bit for bit) to loading ``n`` bars as of ``day`` from the store whenever this
        panel holds at least ``n`` bars <= ``day`` for every row that has them (history scans
        load lookback + the span of their dates): rows an action changed are cut from their
        raw bars and re-adjusted as of ``day``.
        """
        d = int(np.datetime64(day, "D").astype(np.int64))
        width = self.day.shape[1]
        valid = self.day >= 0
        start = width - valid.sum(axis=1)  # first real bar of each row
        end = start + (valid & (self.day <= d)).sum(axis=1)  # one past the last bar <= day
        cols = end[:, None] - n + np.arange(n)[None, :]
        pad = cols < start[:, None]
        idx = np.clip(cols, 0, width - 1)
        out: dict[str, Any] = {}
        for f in FIELDS:
            a = np.take_along_axis(getattr(self, f), idx, axis=1)
            a[pad] = np.nan
            out[f] = a
        dd = np.take_along_axis(self.day, idx, axis=1)
        dd[pad] = -1
        raw: RawRows | None = None
        if self.raw is not None and self.actions is not None:
            r = self.raw.rows
            cut = {}
            for f in FIELDS:
                a = np.take_along_axis(getattr(self.raw, f), idx[r], axis=1)
                a[pad[r]] = np.nan
                cut[f] = a
            raw = adj.apply(cut, self.sids[r], dd[r], self.actions, d, self.adjust)
            for f in FIELDS:
                out[f][r] = cut[f]  # adjusted as of ``day`` (raw where nothing applies)
            if raw is not None:
                raw = replace(raw, rows=r[raw.rows])
        return replace(self, day=dd, as_of=day, raw=raw, **out)

    def frame(self, i: int) -> pd.DataFrame:
        """Row ``i`` as the seed's per-symbol frame: Open..Volume indexed by session date."""
        ok = self.day[i] >= 0
        idx = pd.DatetimeIndex(self.day[i][ok].astype("datetime64[D]"), name="Date")
        return pd.DataFrame({f.capitalize(): getattr(self, f)[i][ok] for f in FIELDS}, index=idx)


def _lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``keys`` (-1 when absent), via a dense table over the range."""
    if len(keys) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    lo = int(min(keys.min(), values.min(initial=keys.min())))
    hi = int(max(keys.max(), values.max(initial=keys.max())))
    table = np.full(hi - lo + 1, -1, dtype=np.int64)
    table[keys - lo] = np.arange(len(keys))
    return table[values - lo]


@njit(cache=True, nogil=True)
def _place(pos: Any, col: Any, w: int, days: Any, o: Any, h: Any, lo: Any, c: Any, v: Any,
           out_o: Any, out_h: Any, out_l: Any, out_c: Any, out_v: Any, out_day: Any) -> None:
    """Right-align each row's bars: the newest bar goes to the last column."""
    n, n_bars = out_c.shape
    grid = np.full((n, w), -1, dtype=np.int64)
    for i in range(len(pos)):
        if pos[i] >= 0 and col[i] >= 0:
            grid[pos[i], col[i]] = i
    for r in range(n):
        j = n_bars - 1
        for k in range(w - 1, -1, -1):
            if j < 0:
                break
            i = grid[r, k]
            if i >= 0:
                out_o[r, j] = o[i]
                out_h[r, j] = h[i]
                out_l[r, j] = lo[i]
                out_c[r, j] = c[i]
                out_v[r, j] = v[i]
                out_day[r, j] = days[k]
                j -= 1
        while j >= 0:
            out_o[r, j] = np.nan
            out_h[r, j] = np.nan
            out_l[r, j] = np.nan
            out_c[r, j] = np.nan
            out_v[r, j] = np.nan
            out_day[r, j] = -1
            j -= 1


def assemble(symbols: np.ndarray, sids: np.ndarray, n_bars: int, as_of: dt.date,
             window: dict[str, np.ndarray], window_days: np.ndarray,
             extra: dict[str, np.ndarray] | None = None) -> Panel:
    """Build a right-aligned panel from long arrays (sid, day, OHLCV) with array operations.

    ``window`` holds every bar whose day is in ``window_days`` (the sorted session days of a date
    window). ``extra`` (optional) holds the last ``n_bars`` bars of rows that need more history
    than the window has; those rows are taken from it instead. Bars are unique per (sid, day).
    """
    n, w = len(sids), len(window_days)
    index = pd.Index(sids)
    # Row and column of each bar through lookup tables (ids and days are small integers).
    wsid = window["sid"].astype(np.int64)
    wday = window["day"].astype(np.int64)
    pos = _lookup(np.asarray(sids, dtype=np.int64), wsid)
    col = _lookup(np.asarray(window_days, dtype=np.int64), wday)
    out = {f: np.empty((n, n_bars)) for f in FIELDS}
    day = np.empty((n, n_bars), dtype=np.int32)
    _place(pos, col, w, np.asarray(window_days, dtype=np.int32),  # type: ignore[call-arg]
           *(np.ascontiguousarray(window[f], dtype=np.float64) for f in FIELDS),
           *(out[f] for f in FIELDS), day)
    if extra is not None and len(extra["sid"]):
        epos = index.get_indexer(extra["sid"])
        eday = extra["day"].astype(np.int64)
        order = np.lexsort((eday, epos))
        epos, eday = epos[order], eday[order]
        redo = np.unique(epos)
        for f in FIELDS:
            out[f][redo] = np.nan
        day[redo] = -1
        ends = np.cumsum(np.bincount(epos, minlength=n))
        rank_e = ends[epos] - 1 - np.arange(len(epos))
        sel = rank_e < n_bars
        for f in FIELDS:
            out[f][epos[sel], n_bars - 1 - rank_e[sel]] = extra[f][order][sel]
        day[epos[sel], n_bars - 1 - rank_e[sel]] = eday[sel]
    return Panel(symbols=np.asarray(symbols, dtype=object), sids=np.asarray(sids, dtype=np.int32),
                 open=out["open"], high=out["high"], low=out["low"], close=out["close"],
                 volume=out["volume"], day=day, as_of=as_of)


class PanelFiles:
    """The last assembled panel of a store, kept beside it as raw ``.npy`` files.

    A new process maps them (``np.load(mmap_mode="r")``) instead of querying and assembling:
    the store's derived data, named by the store's identity ``(store_id, version)``, so any write
    makes it stale and a new store at the same path (deleted and re-imported) never maps an old
    panel. One panel per store: the newest replaces the others. Each panel is written into a
    unique temporary folder and renamed into place (``fsio.atomic_dir``), so readers in other
    processes see a whole panel or none; a read-only folder just skips the write.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _dir(self, ident: tuple[str | None, int], as_of: dt.date, mode: str, n_bars: int
             ) -> Path:
        # The adjustment basis is the as-of session and the mode; the actions it used are
        # those of the store identity (a new action is a new store version).
        return self.directory / f"{ident[0]}-v{ident[1]}-{as_of}-{mode}-{n_bars}"

    def load(self, ident: tuple[str | None, int], as_of: dt.date, n_bars: int,
             mode: str = adj.DEFAULT_MODE) -> Panel | None:
        """The panel saved for this store identity, as of ``as_of`` in ``mode``, or None. Its
        ``actions`` are not kept in the files: the caller attaches the store's."""
        if ident[0] is None:  # a store without an id (read-only, from before ids): never trust
            return None
        d = self._dir(ident, as_of, mode, n_bars)
        if not (d / "complete").exists():
            return None
        try:
            arrays = {f: np.load(d / f"{f}.npy", mmap_mode="r")
                      for f in (*FIELDS, "day", "sids", "symbols")}
            raw = None
            if (d / "raw_rows.npy").exists():
                raw = RawRows(np.load(d / "raw_rows.npy"),
                              *(np.load(d / f"raw_{f}.npy") for f in FIELDS))
        except (OSError, ValueError) as e:
            log.info("panel files at %s unreadable (%s): rebuilding", d, e)
            return None
        return Panel(symbols=np.asarray(arrays.pop("symbols"), dtype=object),
                     sids=np.asarray(arrays.pop("sids")), as_of=as_of, adjust=mode, raw=raw,
                     **arrays)

    def save(self, ident: tuple[str | None, int], p: Panel) -> bool:
        """Keep ``p`` for the store identity ``ident``; False when it could not be written."""
        if ident[0] is None:
            return False
        d = self._dir(ident, p.as_of, p.adjust, p.close.shape[1])
        if d.is_dir():
            return True  # another process saved the same panel
        folder = self.directory.parent
        if not os.access(folder, os.W_OK) or (self.directory.exists()
                                              and not os.access(self.directory, os.W_OK)):
            log.debug("panel files not written: %s is read-only", self.directory)
            return False
        try:
            self.directory.mkdir(exist_ok=True)
            with fsio.atomic_dir(d) as tmp:
                for f in (*FIELDS, "day", "sids"):
                    np.save(tmp / f"{f}.npy", getattr(p, f))
                np.save(tmp / "symbols.npy", p.symbols.astype(str))  # no pickle: a unicode array
                if p.raw is not None:
                    np.save(tmp / "raw_rows.npy", p.raw.rows)
                    for f in FIELDS:
                        np.save(tmp / f"raw_{f}.npy", getattr(p.raw, f))
                (tmp / "complete").touch()
        except OSError as e:  # a read-only or full disk only costs the next process a query
            log.debug("panel files not written to %s: %s", d, e)
            return False
        for old in self.directory.iterdir():
            if old != d and not self._in_progress(old):
                shutil.rmtree(old, ignore_errors=True)
        return True

    @staticmethod
    def _in_progress(path: Path) -> bool:
        """Another writer's temporary folder (left alone unless a crash left it behind)."""
        if not fsio.is_temporary(path):
            return False
        try:
            return time.time() - path.stat().st_mtime < 3600
        except OSError:
            return False
