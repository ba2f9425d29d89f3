"""The scan's indicator columns at many sessions of each row in one pass (pure arrays).

:func:`technic_v4.indicators.compute.block_columns` gives each column's value at a panel's last
bar; here the same values come for every requested bar position of each row, so a replay over
S sessions costs one pass over the history instead of S. Contract:

- Inputs are ``(n, L)`` float64 rows (``day`` int32), right-aligned like a Panel, with at least
  :data:`PAD` padding columns on the left of every row (``Panel.at(day, width + PAD)``), so
  every window ending at a real bar lies inside the array.
- The requested bars are pairs ``(rows[i], at[i])`` (row, column), rows ascending; the outputs
  are ``(P,)`` arrays, one value per pair. ``width`` is the width of the panel the scan itself would see (the stored
  sessions): columns a scan cannot compute on so few bars are NaN here too.
- Every value equals, bit for bit, ``block_columns`` over the row's bars up to that column:
  the recursive indicators are the same TA-Lib-exact kernels (causal: a later bar never
  changes an earlier value), means and standard deviations repeat NumPy's pairwise summation
  (tested against the scan).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from technic_v4.indicators import kernels as k
from technic_v4.indicators.compute import RETURN_HORIZONS, RS_HORIZONS, SWING, WEEKS52

Columns = dict[str, np.ndarray]

PAD = WEEKS52 + 1  # the longest window (Return252D reads 253 bars)

# Column order of the window core's output.
_WINDOW = ("Close", "Volume", "DollarVolume20", "VolumeSurge", "RealizedVol20", "High52W",
           "Low52W", "SwingLow", "SwingHigh", "RSScore", "Bars", "LastDay",
           *(f"Return{h}D" for h in RETURN_HORIZONS))
_RS_H = np.array([h for h, _ in RS_HORIZONS], dtype=np.int64)
_RS_W = np.array([w for _, w in RS_HORIZONS], dtype=np.float64)
_RET_H = np.array(RETURN_HORIZONS, dtype=np.int64)


@njit(cache=True, nogil=True)
def _pairwise(a: Any, lo: int, n: int) -> float:
    """NumPy's pairwise sum of ``a[lo:lo + n]`` for n <= 128 (what ``mean`` does on a row)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _ret(c: Any, r: int, j: int, h: int, width: int) -> float:
    """``c[r, j] / c[r, j - h] - 1`` (NaN when the scan's panel is too narrow). Indexing the
    2-D array directly: a row slice per call made the window core ~10x slower."""
    if width <= h:
        return np.nan
    return c[r, j] / c[r, j - h] - 1.0


@njit(cache=True, nogil=True)
def _rolling_extreme(x: Any, span: int, high: bool, out: Any, dq: Any) -> None:
    """``out[t]`` = ``fmax`` (``high``) or ``fmin`` of ``x[t - span + 1 : t + 1]`` (NaN ignored;
    NaN when the window has no value), by a monotonic queue of indices: O(1) per bar."""
    head = 0
    tail = 0
    for t in range(len(x)):
        y = x[t]
        if y == y:
            while tail > head and (x[dq[tail - 1]] <= y if high else x[dq[tail - 1]] >= y):
                tail -= 1
            dq[tail] = t
            tail += 1
        while tail > head and dq[head] <= t - span:
            head += 1
        out[t] = x[dq[head]] if tail > head else np.nan


@njit(cache=True, nogil=True)
def _window_core(h: Any, lo: Any, c: Any, v: Any, day: Any, lr: Any, rows: Any, at: Any,
                 width: int, ret_h: Any, rs_h: Any, rs_w: Any, full: bool, out: Any) -> None:
    """The window columns at the pairs (``rows[i]``, ``at[i]``), rows ascending, into
    ``out[:, i]`` (order of ``_WINDOW``)."""
    tmp = np.empty(20)
    length = c.shape[1]
    ext = np.empty((4, length))
    dq = np.empty(length, dtype=np.int64)
    year, swing = min(WEEKS52, width), min(SWING, width)
    row = -1
    first = 0
    for i in range(len(rows)):
        r = rows[i]
        j = at[i]
        if r != row:
            row = r
            if full:
                _rolling_extreme(h[r], year, True, ext[0], dq)
                _rolling_extreme(lo[r], year, False, ext[1], dq)
                _rolling_extreme(lo[r], swing, False, ext[2], dq)
                _rolling_extreme(h[r], swing, True, ext[3], dq)
            first = 0
            while first < length and day[r, first] < 0:
                first += 1
        out[0, i] = c[r, j]
        out[1, i] = v[r, j]
        for m in range(20):
            tmp[m] = c[r, j - 19 + m] * v[r, j - 19 + m]
        out[2, i] = _pairwise(tmp, 0, 20) / 20.0
        if full:
            for m in range(20):
                tmp[m] = v[r, j - 20 + m]
            out[3, i] = v[r, j] / (_pairwise(tmp, 0, 20) / 20.0)
            if width >= 21:
                for m in range(20):
                    tmp[m] = lr[r, j - 19 + m]
                mean = _pairwise(tmp, 0, 20) / 20.0
                for m in range(20):
                    d = lr[r, j - 19 + m] - mean
                    tmp[m] = d * d
                out[4, i] = np.sqrt(_pairwise(tmp, 0, 20) / 19.0) * np.sqrt(252.0) * 100.0
            else:
                out[4, i] = np.nan
            for m in range(4):
                out[5 + m, i] = ext[m, j]
        else:  # the pre-screen's columns only (and RSScore, bars, last day below)
            for m in range(3, 9):
                out[m, i] = np.nan
        num = 0.0
        den = 0.0
        for m in range(len(rs_h)):
            x = _ret(c, r, j, rs_h[m], width)
            if np.isfinite(x):
                num += rs_w[m] * x
                den += rs_w[m]
        if np.isfinite(_ret(c, r, j, rs_h[0], width)):
            out[9, i] = num / den * 100.0
        else:
            out[9, i] = np.nan
        out[10, i] = float(j - first + 1)
        out[11, i] = float(day[r, j])
        for m in range(len(ret_h)):
            out[12 + m, i] = _ret(c, r, j, ret_h[m], width) * 100.0


def at_pairs(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray,
             day: np.ndarray, rows: np.ndarray, at: np.ndarray, width: int,
             indicators: bool = True) -> Columns:
    """Every indicator column of ``block_columns`` at the bars ``(rows[i], at[i])`` (rows
    ascending): ``(P,)`` arrays (see the module docstring). ``indicators=False``: the window
    columns only (close, volume, dollar volume, returns, RSScore, bars …), not the recursive
    indicators (nor VolumeSurge, RealizedVol20 and the extremes: NaN)."""
    del o  # no column reads the open
    n = c.shape[0]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    at = np.ascontiguousarray(at, dtype=np.int64)
    out: Columns = {}
    if indicators:
        out.update(_indicators(h, lo, c, rows, at))
    lr = np.empty((n, 1))
    if indicators:  # RealizedVol20's log returns; lr[:, t] is log(c[t] / c[t - 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            lr = np.concatenate([np.full((n, 1), np.nan), np.log(c[:, 1:] / c[:, :-1])], axis=1)
    win = np.empty((len(_WINDOW), len(rows)))
    _window_core(h, lo, c, v, day, lr, rows, at, width, _RET_H, _RS_H, _RS_W, indicators, win)
    for m, name in enumerate(_WINDOW):
        out[name] = win[m]
    return out


def _indicators(h: np.ndarray, lo: np.ndarray, c: np.ndarray, rows: np.ndarray,
                at: np.ndarray) -> Columns:
    """The recursive indicators (``kernels.SCAN_COLUMNS``) over whole rows, read at the pairs."""
    flat = rows * c.shape[1] + at
    out: Columns = {}
    ta = {"SMA20": k.sma(c, 20), "SMA50": k.sma(c, 50), "SMA200": k.sma(c, 200),
          "EMA21": k.ema(c, 21), "RSI14": k.rsi(c, 14)}
    ta["MACD"], ta["MACDSignal"], ta["MACDHist"] = k.macd(c, 12, 26, 9)
    ta["ATR14"] = k.atr(h, lo, c, 14)
    ta["PlusDI14"], ta["MinusDI14"], ta["ADX14"] = k.dmi(h, lo, c, 14)
    ta["BBUpper"], ta["BBMiddle"], ta["BBLower"] = k.bbands(c, 20, 2.0, 2.0)
    for name, series in ta.items():
        out[name] = series.ravel()[flat]
    return out


def derived(cols: Columns) -> None:
    """The columns computed from others, in place (as ``block_columns`` computes them)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        close = cols["Close"]
        cols["ATRPct"] = cols["ATR14"] / close * 100.0
        cols["BBWidth"] = (cols["BBUpper"] - cols["BBLower"]) / cols["BBMiddle"] * 100.0
        cols["PctFromHigh52W"] = (close / cols["High52W"] - 1.0) * 100.0
