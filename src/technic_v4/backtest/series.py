"""The scan's indicator columns at many sessions of each row in one pass (pure arrays).

:func:`technic_v4.indicators.compute.block_columns` gives each column's value at a panel's last
bar; here the same values come for every requested bar position of each row, so a replay over
S sessions costs one pass over the history instead of S. Contract:

- Inputs are ``(n, L)`` float64 rows (``day`` int32), right-aligned like a Panel, with at least
  :data:`PAD` padding columns on the left of every row (``Panel.at(day, width + PAD)``), so
  every window ending at a real bar lies inside the array.
- ``at`` is ``(n, S)`` int64: the column of each requested bar (-1: not requested, the outputs
  hold NaN there). ``width`` is the width of the panel the scan itself would see (the stored
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
def _ret(c: Any, j: int, h: int, width: int) -> float:
    if width <= h:
        return np.nan
    return c[j] / c[j - h] - 1.0


@njit(cache=True, nogil=True)
def _extreme(x: Any, j: int, span: int, high: bool) -> float:
    """``fmax`` (``high``) or ``fmin`` of ``x[j - span + 1 : j + 1]``, NaN ignored."""
    best = np.nan
    for t in range(j - span + 1, j + 1):
        y = x[t]
        if y == y and (best != best or (y > best if high else y < best)):
            best = y
    return best


@njit(cache=True, nogil=True)
def _window_core(h: Any, lo: Any, c: Any, v: Any, day: Any, lr: Any, at: Any, width: int,
                 ret_h: Any, rs_h: Any, rs_w: Any, out: Any) -> None:
    n, s = at.shape
    tmp = np.empty(20)
    for r in range(n):
        first = 0
        while first < day.shape[1] and day[r, first] < 0:
            first += 1
        for q in range(s):
            j = at[r, q]
            if j < 0:
                for m in range(out.shape[2]):
                    out[r, q, m] = np.nan
                continue
            out[r, q, 0] = c[r, j]
            out[r, q, 1] = v[r, j]
            for m in range(20):
                tmp[m] = c[r, j - 19 + m] * v[r, j - 19 + m]
            out[r, q, 2] = _pairwise(tmp, 0, 20) / 20.0
            out[r, q, 3] = v[r, j] / (_pairwise(v[r], j - 20, 20) / 20.0)
            if width >= 21:
                mean = _pairwise(lr[r], j - 19, 20) / 20.0
                for m in range(20):
                    d = lr[r, j - 19 + m] - mean
                    tmp[m] = d * d
                out[r, q, 4] = np.sqrt(_pairwise(tmp, 0, 20) / 19.0) * np.sqrt(252.0) * 100.0
            else:
                out[r, q, 4] = np.nan
            year, swing = min(WEEKS52, width), min(SWING, width)
            out[r, q, 5] = _extreme(h[r], j, year, True)
            out[r, q, 6] = _extreme(lo[r], j, year, False)
            out[r, q, 7] = _extreme(lo[r], j, swing, False)
            out[r, q, 8] = _extreme(h[r], j, swing, True)
            num = 0.0
            den = 0.0
            for m in range(len(rs_h)):
                x = _ret(c[r], j, rs_h[m], width)
                if np.isfinite(x):
                    num += rs_w[m] * x
                    den += rs_w[m]
            if np.isfinite(_ret(c[r], j, rs_h[0], width)):
                out[r, q, 9] = num / den * 100.0
            else:
                out[r, q, 9] = np.nan * 100.0
            out[r, q, 10] = float(j - first + 1) if first <= j else 0.0
            out[r, q, 11] = float(day[r, j])
            for m in range(len(ret_h)):
                out[r, q, 12 + m] = _ret(c[r], j, ret_h[m], width) * 100.0


def at_sessions(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray,
                day: np.ndarray, at: np.ndarray, width: int, indicators: bool = True
                ) -> Columns:
    """Every indicator column of ``block_columns`` at the columns ``at`` of each row: ``(n, S)``
    arrays (see the module docstring). ``indicators=False``: the window columns only (close,
    volume, dollar volume, returns, RSScore, bars …), not the recursive indicators."""
    del o  # no column reads the open
    n, s = at.shape
    out: Columns = {}
    if indicators:
        out.update(_indicators(h, lo, c, at))
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(c[:, 1:] / c[:, :-1])
    lr = np.concatenate([np.full((n, 1), np.nan), lr], axis=1)  # lr[:, t]: c[t] / c[t - 1]
    win = np.empty((n, s, len(_WINDOW)))
    _window_core(h, lo, c, v, day, lr, np.ascontiguousarray(at), width, _RET_H, _RS_H, _RS_W,
                 win)
    for m, name in enumerate(_WINDOW):
        out[name] = win[:, :, m]
    return out


def _indicators(h: np.ndarray, lo: np.ndarray, c: np.ndarray, at: np.ndarray) -> Columns:
    """The recursive indicators (``kernels.SCAN_COLUMNS``) over whole rows, read at ``at``."""
    safe = np.where(at >= 0, at, c.shape[1] - 1)
    out: Columns = {}
    ta = {"SMA20": k.sma(c, 20), "SMA50": k.sma(c, 50), "SMA200": k.sma(c, 200),
          "EMA21": k.ema(c, 21), "RSI14": k.rsi(c, 14)}
    ta["MACD"], ta["MACDSignal"], ta["MACDHist"] = k.macd(c, 12, 26, 9)
    ta["ATR14"] = k.atr(h, lo, c, 14)
    ta["PlusDI14"], ta["MinusDI14"], ta["ADX14"] = k.dmi(h, lo, c, 14)
    ta["BBUpper"], ta["BBMiddle"], ta["BBLower"] = k.bbands(c, 20, 2.0, 2.0)
    for name, series in ta.items():
        vals = np.take_along_axis(series, safe, axis=1)
        vals[at < 0] = np.nan
        out[name] = vals
    return out


def derived(cols: Columns) -> None:
    """The columns computed from others, in place (as ``block_columns`` computes them)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        close = cols["Close"]
        cols["ATRPct"] = cols["ATR14"] / close * 100.0
        cols["BBWidth"] = (cols["BBUpper"] - cols["BBLower"]) / cols["BBMiddle"] * 100.0
        cols["PctFromHigh52W"] = (close / cols["High52W"] - 1.0) * 100.0
