"""Window functions of the screen language over (N, L) panels.

``highest lowest sum stddev change crossed_above crossed_below bars_since count between``.
Each value reads only its own window, so a value does not depend on where the panel starts (the
engine may pass the trailing bars it needs). NaN policy: a window holding a NaN (padding, or an
undefined value such as a division by zero) gives NaN; conditions are False where undefined.

``highest``/``lowest`` are TA-Lib's MAX/MIN (the bit-exact kernels of
:mod:`technic_v4.indicators.kernels`). ``sum`` adds the window left to right from 0.0 and
``stddev`` is the two-pass population standard deviation (mean of the window, then the mean of
squared deviations) -- exact where TA-Lib's running sums lose digits to cancellation; they agree
with TA-Lib's SUM/STDDEV to ~1e-12 relative on prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from technic_v4.indicators import kernels as k

if TYPE_CHECKING:
    from technic_v4.terms.kernels import Bars, Impl


def _nan_windows(x: np.ndarray, n: int) -> np.ndarray:
    """(N, L) bool: the window of ``n`` bars ending at each bar is incomplete or holds a NaN."""
    bad = np.isnan(x)
    cs = np.zeros((x.shape[0], x.shape[1] + 1), dtype=np.int64)
    np.cumsum(bad, axis=1, out=cs[:, 1:])
    out = np.ones(x.shape, dtype=bool)
    if n <= x.shape[1]:
        out[:, n - 1:] = (cs[:, n:] - cs[:, :-n]) > 0
    return out


def _extreme(x: np.ndarray, n: int, highest: bool) -> np.ndarray:
    xf = np.ascontiguousarray(x, dtype=np.float64)
    if n == 1:
        return xf.copy()
    out = k.rolling_max(xf, n) if highest else k.rolling_min(xf, n)
    out[_nan_windows(xf, n)] = np.nan
    return out


@njit(cache=True, nogil=True)
def _sum_core(x: Any, n: int, out: Any) -> None:
    rows, width = x.shape
    for r in range(rows):
        for i in range(width):
            if i < n - 1:
                out[r, i] = np.nan
                continue
            s = 0.0
            for j in range(i - n + 1, i + 1):
                s += x[r, j]
            out[r, i] = s


@njit(cache=True, nogil=True)
def _std_core(x: Any, n: int, out: Any) -> None:
    rows, width = x.shape
    for r in range(rows):
        for i in range(width):
            if i < n - 1:
                out[r, i] = np.nan
                continue
            s = 0.0
            for j in range(i - n + 1, i + 1):
                s += x[r, j]
            mean = s / n
            v = 0.0
            for j in range(i - n + 1, i + 1):
                d = x[r, j] - mean
                v += d * d
            out[r, i] = math.sqrt(v / n)


def _run(core: Any, x: np.ndarray, n: int) -> np.ndarray:
    xf = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(xf)
    core(xf, n, out)
    out[_nan_windows(xf, n)] = np.nan  # inf - inf in a window is NaN already; padding here
    return out


def shift(x: np.ndarray, n: int) -> np.ndarray:
    """``x[n]``: the value ``n`` bars earlier (NaN, or False for conditions, before the first)."""
    if n == 0:
        return x
    out = np.full(x.shape, False if x.dtype == bool else np.nan, dtype=x.dtype)
    if n < x.shape[1]:
        out[:, n:] = x[:, :-n]
    return out



def highest(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    return _extreme(args[0], int(p["n"]), True)


def lowest(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    return _extreme(args[0], int(p["n"]), False)


def sum_(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    return _run(_sum_core, args[0], int(p["n"]))


def stddev(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    return _run(_std_core, args[0], int(p["n"]))


def change(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """100 × (x / x[n] − 1); NaN where x[n] is 0 (division by zero) or missing."""
    x = np.asarray(args[0], dtype=np.float64)
    before = shift(x, int(p["n"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * (x / before - 1.0)
    out[before == 0.0] = np.nan
    return out


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        now = a > b
        before = shift(a, 1) <= shift(b, 1)
    return now & before


def crossed_above(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """a > b on this bar and a <= b on the bar before (False where either is NaN)."""
    return _cross(args[0], args[1])


def crossed_below(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """a < b on this bar and a >= b on the bar before."""
    return _cross(args[1], args[0])


def bars_since(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """Bars since ``cond`` last held (0 when it holds on this bar; NaN if never in the panel)."""
    cond = args[0]
    idx = np.arange(cond.shape[1], dtype=np.float64)
    last = np.where(cond, idx, -1.0)
    np.maximum.accumulate(last, axis=1, out=last)
    out = idx - last
    out[last < 0] = np.nan
    return out


def count(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """Bars among the last ``n`` where ``cond`` held; NaN until the row has ``n`` real bars."""
    cond = args[0]
    n = int(p["n"])
    cs = np.zeros((cond.shape[0], cond.shape[1] + 1), dtype=np.int64)
    np.cumsum(cond, axis=1, out=cs[:, 1:])
    out = np.full(cond.shape, np.nan)
    if n <= cond.shape[1]:
        out[:, n - 1:] = cs[:, n:] - cs[:, :-n]
    padding = np.where(bars.day >= 0, 0.0, np.nan)  # padding bars are not sessions of the row
    out[_nan_windows(padding, n)] = np.nan
    return out


def between(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    """lo <= x <= hi (inclusive; False where any is NaN)."""
    x, lo, hi = args
    with np.errstate(invalid="ignore"):
        return np.asarray((lo <= x) & (x <= hi))


IMPLS: dict[str, Impl] = {
    "highest": highest, "lowest": lowest, "sum": sum_, "stddev": stddev, "change": change,
    "crossed_above": crossed_above, "crossed_below": crossed_below, "bars_since": bars_since,
    "count": count, "between": between,
}
# Functions whose value reads only its own window (lookback bars before it): the engine may
# pass just the trailing bars a caller needs.
LOCAL = frozenset({"highest", "lowest", "sum", "stddev", "change", "crossed_above",
                   "crossed_below", "count", "between"})
