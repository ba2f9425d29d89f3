"""Panel -> the scan's indicator columns (values at each row's last bar).

Every indicator runs over the scanned rows of the panel with the array kernels in ``kernels``;
rows are split into chunks that run on a thread pool (the kernels release the GIL), and each
chunk reads its rows from the panel in blocks small enough to stay in cache. Each indicator declares
the history it needs (``LOOKBACK``), so a scan asks the store for enough bars.

Units: every ``*Pct``, ``Return*``, ``BBWidth``, ``RealizedVol20`` and ``VolumeSurge``-free ratio
column is in percent; prices in the panel's currency.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from technic_v4.data.panel import Panel
from technic_v4.execution import Backend, LocalBackend
from technic_v4.indicators import kernels as k

# Bars each output needs before it has a value (TA-Lib lookback + 1).
LOOKBACK: dict[str, int] = {
    "SMA20": 20, "SMA50": 50, "SMA200": 200, "EMA21": 21, "RSI14": 15, "MACD": 34,
    "ATR14": 15, "ADX14": 28, "PlusDI14": 15, "MinusDI14": 15, "BBANDS": 20,
    "Return252D": 253, "High52W": 1, "RealizedVol20": 21, "DollarVolume20": 20,
    "VolumeSurge": 21,
}
RETURN_HORIZONS = (1, 5, 21, 63, 126, 252)
RS_HORIZONS = ((63, 0.4), (126, 0.2), (189, 0.2), (252, 0.2))  # IBD-style weights
WEEKS52 = 252
SWING = 10  # bars of the swing low/high used by trade plans

Columns = dict[str, np.ndarray]


# Rows per block: a block's bars and the kernels' scratch arrays (~2 MB) stay in cache and are
# reused block after block, where a whole chunk at once allocates (and page-faults) panel-sized
# temporaries. Measured on the 6,000-listing market, one thread: 128-512 rows run the kernels
# ~30 % faster than the whole 3,863 rows at once; 32 rows lose it again to per-call overhead.
BLOCK_ROWS = 128
FIELDS = ("open", "high", "low", "close", "volume", "day")
VOLUME_BARS = 21  # the volume columns' window: the last bar and the 20 before it


def block_columns(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                  v: np.ndarray, day: np.ndarray) -> Columns:
    """Every indicator column for one block of rows (pure; each row's values depend on that
    row's bars only, so any split of the rows gives the same values). ``v`` may hold only the
    last :data:`VOLUME_BARS` bars."""
    out: Columns = dict(k.scan_last(o, h, lo, c))
    close = np.ascontiguousarray(c[:, -1])
    with np.errstate(divide="ignore", invalid="ignore"):
        logret = np.log(c[:, -21:][:, 1:] / c[:, -21:][:, :-1])
        # NaN unless all 20 returns exist (fewer than 21 bars).
        out["RealizedVol20"] = (np.std(logret, axis=1, ddof=1) * np.sqrt(252.0) * 100.0
                                if logret.shape[1] == 20 else np.full(len(c), np.nan))
        out["Close"] = close
        out["Volume"] = np.ascontiguousarray(v[:, -1])
        out["DollarVolume20"] = dollar_volume20(c, v)
        for hzn in RETURN_HORIZONS:
            out[f"Return{hzn}D"] = _ret(c, hzn) * 100.0
        out["ATRPct"] = out["ATR14"] / close * 100.0
        out["BBWidth"] = (out["BBUpper"] - out["BBLower"]) / out["BBMiddle"] * 100.0
        out["High52W"] = _nanreduce(np.fmax, h[:, -WEEKS52:])
        out["Low52W"] = _nanreduce(np.fmin, lo[:, -WEEKS52:])
        out["PctFromHigh52W"] = (close / out["High52W"] - 1.0) * 100.0
        out["VolumeSurge"] = v[:, -1] / v[:, -21:-1].mean(axis=1)
        out["SwingLow"] = _nanreduce(np.fmin, lo[:, -SWING:])
        out["SwingHigh"] = _nanreduce(np.fmax, h[:, -SWING:])
        out["RSScore"] = rs_score(c)
    out["Bars"] = (day >= 0).sum(axis=1).astype(np.float64)
    out["LastDay"] = day[:, -1].astype(np.int64)
    return out


def chunk_columns(rows: np.ndarray, *fields: np.ndarray) -> Columns:
    """:func:`block_columns` for ``rows`` of the whole panel's ``fields`` (:data:`FIELDS`),
    gathered block by block: no copy of the chunk is ever made (runs on any backend)."""
    if len(rows) <= BLOCK_ROWS:
        return block_columns(*(f[rows] for f in fields))
    out: Columns = {}
    for lo in range(0, len(rows), BLOCK_ROWS):
        r = rows[lo:lo + BLOCK_ROWS]
        for key, x in block_columns(*(f[r] for f in fields)).items():
            if key not in out:
                out[key] = np.empty(len(rows), dtype=x.dtype)
            out[key][lo:lo + len(r)] = x
    return out


def compute(panel: Panel, backend: Backend | None = None,
            on_chunk: Callable[[int], None] | None = None,
            rows: np.ndarray | None = None) -> Columns:
    """Indicator columns for ``rows`` of ``panel`` (every row by default), in that order (see
    the module docstring for units). The rows are read where they are: the panel is never
    copied (a memory-mapped panel is read block by block by the chunks' threads)."""
    backend = backend or LocalBackend(1)
    picked = np.arange(len(panel.symbols)) if rows is None else np.asarray(rows, np.int64)
    fields = tuple(np.asarray(getattr(panel, f)) for f in FIELDS)
    # Volume columns look at the last 21 bars only (VolumeSurge, DollarVolume20): read no more.
    fields = (*fields[:4], fields[4][:, -VOLUME_BARS:], fields[5])
    if len(picked) == 0:
        return chunk_columns(picked, *fields)
    parts = backend.run_chunks(chunk_columns, (picked,), on_chunk, shared=fields)
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def dollar_volume20(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Mean close x volume of the last 20 bars; NaN unless all 20 exist (young listings)."""
    return (close[:, -20:] * volume[:, -20:]).mean(axis=1)


def _ret(c: np.ndarray, hzn: int) -> np.ndarray:
    if c.shape[1] <= hzn:
        return np.full(c.shape[0], np.nan)
    return c[:, -1] / c[:, -1 - hzn] - 1.0


def _nanreduce(fn: np.ufunc, a: np.ndarray) -> np.ndarray:
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    return fn.reduce(a, axis=1)


def rs_score(c: np.ndarray) -> np.ndarray:
    """Weighted 3/6/9/12-month return (0.4/0.2/0.2/0.2); weights of missing horizons are
    redistributed over the available ones (young listings), NaN without a 3-month return."""
    num = np.zeros(c.shape[0])
    den = np.zeros(c.shape[0])
    for hzn, w in RS_HORIZONS:
        r = _ret(c, hzn)
        ok = np.isfinite(r)
        num[ok] += w * r[ok]
        den[ok] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.isfinite(_ret(c, RS_HORIZONS[0][0])), num / den, np.nan)
    return out * 100.0
