"""Pure array kernels for technical indicators, bit-exact with TA-Lib.

Every function here works on plain NumPy arrays (no pandas, no I/O) and reproduces the
values of the TA-Lib C library shipped with the ``talib`` Python package (TA-Lib 0.8.1,
default settings: unstable period 0, default compatibility) operation by operation, so the
results are bit-identical, not merely close.  ``rolling_std`` is the one exception: it has
no TA-Lib counterpart and is specified against ``np.std(window, ddof=1)`` (see below).

Contract
--------
Panel orientation
    Inputs are 2D float64 arrays shaped ``(n_symbols, n_bars)``; one row is one symbol's own
    consecutive bars, oldest -> newest.  Rows are right-aligned: a symbol with fewer bars
    has leading NaNs, and after its first non-NaN value a row contains no NaN (the loader
    guarantees it; rows breaking this rule get unspecified values).  For functions with
    several inputs (high, low, close) the first valid index of a row is the first index
    where *all* inputs are non-NaN.
    Any float64 (n, T) array is accepted (it is made C-contiguous first); 1D arrays are
    treated as a single row and a 1D result is returned.
Output
    Newly allocated float64 arrays of the input's shape, NaN wherever TA-Lib gives no value.
    Row ``r`` equals ``talib.FUNC(row_r_inputs[first_valid:], ...)`` written back at the
    same positions -- which is also what ``talib.FUNC(row_r_inputs)`` returns, since the
    talib wrapper skips leading NaNs the same way.  A row with fewer valid bars than the
    lookback (or no valid bar at all) is all NaN.
Execution
    The compiled cores are ``numba.njit(cache=True, nogil=True)``, never ``fastmath``, and
    loop over rows serially (no ``prange``): callers parallelise by running the public
    functions on row chunks in a thread pool.  They use ``error_model="numpy"`` so that a
    float division follows IEEE-754 exactly like C instead of raising.
Parameters
    Periods are validated with TA-Lib's own ranges (a ``ValueError`` where talib would
    report ``TA_BAD_PARAM``).

TA-Lib 0.8.1 conventions replicated here (read from its sources and its binary)
-------------------------------------------------------------------------------
* Seeds are plain left-to-right sums starting from ``0.0`` and then divided by the period
  (SMA window, EMA/MACD seeds, ATR seed, RSI seed, DM/TR sums).
* EMA, MACD and ATR use fused multiply-add: ``ema = fma(x - ema, k, ema)`` with
  ``k = 2 / (period + 1)``; ``atr = fma(atr, (p - 1) / p, tr * (1 - (p - 1) / p))``.
  The fma here is LLVM's ``llvm.fma.f64`` (always correctly rounded, like C's ``fma``).
* EMA with period 1 and MACD with signal period 1 copy their input instead of smoothing.
* MACD swaps fast/slow when slow < fast; the fast EMA seed window ends on the same bar as
  the slow one; the signal EMA is seeded with the mean of the first ``signal`` MACD values.
* RSI multiplies by ``1 / period`` (it does not divide by the period), Wilder-smooths as
  ``(avg * (p - 1) + x) * (1 / p)`` and outputs 0 when ``avg_gain + avg_loss`` is not > 0.
* PLUS_DI / MINUS_DI / ADX output a DI only when the smoothed TR is > 0 (else DI = 0) and
  skip a DX when ``-1e-14 < +DI + -DI < 1e-14`` (TA_IS_ZERO, epsilon 1e-14 in 0.8.1).
* BBANDS (SMA) runs TA-Lib's cancellation-free variance: running sums of deviations from
  a shift, re-anchored on the window mean (two-pass) whenever the variance falls under
  1e-6 of the mean squared deviation, an outlier leaves the window, or every 32 * period
  bars; a fresh variance under 1e-12 of that scale is floored to 0.  The upper band is
  ``fma(nbdevup, sd, mid)`` unless ``nbdevup == nbdevdn`` (then ``mid + nbdev * sd``);
  the lower band is always ``mid - nbdevdn * sd``.
* MAX / MIN are van Herk / Gil-Werman block scans aligned on the row's first valid bar;
  their tie rules are kept, so even a +0.0 / -0.0 tie returns the same zero as TA-Lib.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "atr",
    "bbands",
    "dmi",
    "ema",
    "last_valid",
    "macd",
    "rolling_max",
    "rolling_min",
    "rolling_std",
    "rsi",
    "sma",
]

FloatArray = npt.NDArray[np.float64]

_MAX_PERIOD = 100_000
_TA_EPSILON = 1e-14  # TA_IS_ZERO band of TA-Lib 0.8.1 (was 1e-8 before 0.8)
_NBDEV_LIMIT = 3e37  # TA-Lib's accepted range for optInNbDevUp / optInNbDevDn

_JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


# ---------------------------------------------------------------------------------------
# Low-level helpers
# ---------------------------------------------------------------------------------------


def _fma_typer(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """Typing/codegen of ``_fma``: correctly rounded ``a * b + c`` (``llvm.fma.f64``)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        double = ir.DoubleType()
        fnty = ir.FunctionType(double, [double, double, double])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


# Fused multiply-add usable inside njit code, exactly like C's fma() in TA-Lib (one
# rounding).  The cast only tells mypy the nopython-mode call signature.
_fma = cast("Callable[[float, float, float], float]", intrinsic(_fma_typer))


@njit(**_JIT_OPTIONS)
def _first_valid(x: Any) -> int:
    """Index of the first non-NaN value of a 1D row, ``len(x)`` if there is none."""
    n = x.shape[0]
    for i in range(n):
        if not np.isnan(x[i]):
            return i
    return n


@njit(**_JIT_OPTIONS)
def _first_valid3(a: Any, b: Any, c: Any) -> int:
    """First index where the three rows are all non-NaN, ``len(a)`` if there is none."""
    n = a.shape[0]
    for i in range(n):
        if not (np.isnan(a[i]) or np.isnan(b[i]) or np.isnan(c[i])):
            return i
    return n


@njit(**_JIT_OPTIONS)
def _fill_nan(o: Any, stop: int) -> None:
    """``o[:stop] = NaN`` (clipped to the row length)."""
    n = o.shape[0]
    if stop > n:
        stop = n
    for i in range(stop):
        o[i] = np.nan


@njit(**_JIT_OPTIONS)
def _true_range(high: float, low: float, prev_close: float) -> float:
    """TA-Lib's true range: high-low, then replaced by each larger previous-close gap."""
    greatest = high - low
    v = abs(prev_close - high)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low)
    if v > greatest:
        greatest = v
    return greatest


# ---------------------------------------------------------------------------------------
# Compiled cores (2D in, 2D out, serial over rows)
# ---------------------------------------------------------------------------------------


@njit(**_JIT_OPTIONS)
def _sma_row(x: Any, b: int, period: int, o: Any) -> None:
    """TA-Lib's SMA (running total) of ``x[b:]`` into ``o`` from ``b + period - 1`` on."""
    n = x.shape[0]
    start = b + period - 1
    if start >= n:
        return
    total = 0.0
    for j in range(b, start):
        total += x[j]
    trailing = b
    for i in range(start, n):
        total += x[i]
        o[i] = total / period
        total -= x[trailing]
        trailing += 1


@njit(**_JIT_OPTIONS)
def _sma_core(x: Any, period: int, out: Any) -> None:
    n_rows = x.shape[0]
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        b = _first_valid(xr)
        _fill_nan(o, b + period - 1)
        _sma_row(xr, b, period, o)


@njit(**_JIT_OPTIONS)
def _ema_row(xr: Any, period: int, o: Any) -> None:
    n = xr.shape[0]
    b = _first_valid(xr)
    start = b + period - 1
    _fill_nan(o, start)
    if start >= n:
        return
    if period == 1:
        for i in range(start, n):
            o[i] = xr[i]
        return
    k = 2.0 / float(period + 1)
    total = 0.0
    for j in range(b, start + 1):
        total += xr[j]
    prev = total / period
    o[start] = prev
    for i in range(start + 1, n):
        prev = _fma(xr[i] - prev, k, prev)
        o[i] = prev


@njit(**_JIT_OPTIONS)
def _ema_core(x: Any, period: int, out: Any) -> None:
    for r in range(x.shape[0]):
        _ema_row(x[r], period, out[r])


@njit(**_JIT_OPTIONS)
def _rsi_core(x: Any, period: int, out: Any) -> None:
    n_rows, n = x.shape
    inv_p = 1.0 / float(period)
    pm1 = float(period - 1)
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        b = _first_valid(xr)
        start = b + period
        _fill_nan(o, start)
        if start >= n:
            continue
        gain = 0.0
        loss = 0.0
        prev = xr[b]
        for j in range(b + 1, start + 1):
            cur = xr[j]
            diff = cur - prev
            prev = cur
            up = diff if diff > 0.0 else 0.0
            gain += up
            loss += up - diff
        loss *= inv_p
        gain *= inv_p
        total = loss + gain
        o[start] = (gain / total) * 100.0 if total > 0.0 else 0.0
        for i in range(start + 1, n):
            cur = xr[i]
            diff = cur - prev
            prev = cur
            up = diff if diff > 0.0 else 0.0
            gain = (gain * pm1 + up) * inv_p
            loss = ((up - diff) + loss * pm1) * inv_p
            total = loss + gain
            o[i] = (gain / total) * 100.0 if total > 0.0 else 0.0


@njit(**_JIT_OPTIONS)
def _macd_core(
    x: Any, fast: int, slow: int, signal: int, out_macd: Any, out_signal: Any, out_hist: Any
) -> None:
    n_rows, n = x.shape
    k_fast = 2.0 / float(fast + 1)
    k_slow = 2.0 / float(slow + 1)
    k_signal = 2.0 / float(signal + 1)
    lookback = (slow - 1) + (signal - 1)
    for r in range(n_rows):
        xr = x[r]
        om = out_macd[r]
        os_ = out_signal[r]
        oh = out_hist[r]
        b = _first_valid(xr)
        start = b + lookback
        _fill_nan(om, start)
        _fill_nan(os_, start)
        _fill_nan(oh, start)
        if start >= n:
            continue
        # Seeds: the fast window is the tail of the slow window (both end on one bar).
        today = b
        slow_sum = 0.0
        for _ in range(slow - fast):
            slow_sum += xr[today]
            today += 1
        fast_sum = 0.0
        for _ in range(fast):
            v = xr[today]
            fast_sum += v
            slow_sum += v
            today += 1
        prev_slow = slow_sum / slow
        prev_fast = fast_sum / fast
        macd_value = prev_fast - prev_slow
        if signal == 1:
            # TA-Lib's period-1 path: the signal line is the MACD line itself.
            for i in range(start, n):
                if i > start:
                    v = xr[i]
                    prev_fast = _fma(v - prev_fast, k_fast, prev_fast)
                    prev_slow = _fma(v - prev_slow, k_slow, prev_slow)
                    macd_value = prev_fast - prev_slow
                om[i] = macd_value
                os_[i] = macd_value
                oh[i] = macd_value - macd_value
            continue
        prev_signal = 0.0
        prev_signal += macd_value
        for _ in range(signal - 1):
            v = xr[today]
            today += 1
            prev_fast = _fma(v - prev_fast, k_fast, prev_fast)
            prev_slow = _fma(v - prev_slow, k_slow, prev_slow)
            macd_value = prev_fast - prev_slow
            prev_signal += macd_value
        prev_signal = prev_signal / signal
        om[start] = macd_value
        os_[start] = prev_signal
        oh[start] = macd_value - prev_signal
        for i in range(start + 1, n):
            v = xr[i]
            prev_fast = _fma(v - prev_fast, k_fast, prev_fast)
            prev_slow = _fma(v - prev_slow, k_slow, prev_slow)
            macd_value = prev_fast - prev_slow
            prev_signal = _fma(macd_value - prev_signal, k_signal, prev_signal)
            om[i] = macd_value
            os_[i] = prev_signal
            oh[i] = macd_value - prev_signal


@njit(**_JIT_OPTIONS)
def _atr_core(high: Any, low: Any, close: Any, period: int, out: Any) -> None:
    n_rows, n = high.shape
    keep = float(period - 1) / float(period)
    gain = 1.0 - keep
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        o = out[r]
        b = _first_valid3(hr, lr, cr)
        start = b + period
        _fill_nan(o, start)
        if start >= n:
            continue
        total = 0.0
        for j in range(b + 1, start + 1):
            total += _true_range(hr[j], lr[j], cr[j - 1])
        prev = total / period
        o[start] = prev
        for i in range(start + 1, n):
            tr = _true_range(hr[i], lr[i], cr[i - 1])
            prev = _fma(prev, keep, tr * gain)
            o[i] = prev


@njit(**_JIT_OPTIONS)
def _dmi_core(
    high: Any, low: Any, close: Any, period: int, out_plus: Any, out_minus: Any, out_adx: Any
) -> None:
    n_rows, n = high.shape
    pm1 = float(period - 1)
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        op = out_plus[r]
        om = out_minus[r]
        oa = out_adx[r]
        b = _first_valid3(hr, lr, cr)
        di_start = b + period
        adx_start = b + 2 * period - 1
        _fill_nan(op, di_start)
        _fill_nan(om, di_start)
        _fill_nan(oa, adx_start)
        if di_start >= n:
            continue
        prev_high = hr[b]
        prev_low = lr[b]
        prev_close = cr[b]
        minus_dm = 0.0
        plus_dm = 0.0
        tr_sum = 0.0
        # Initial DM / TR sums over period - 1 bars.
        for j in range(b + 1, di_start):
            h = hr[j]
            lo = lr[j]
            diff_p = h - prev_high
            diff_m = prev_low - lo
            prev_high = h
            prev_low = lo
            if diff_m > 0.0 and diff_p < diff_m:
                minus_dm += diff_m
            elif diff_p > 0.0 and diff_p > diff_m:
                plus_dm += diff_p
            tr_sum += _true_range(h, lo, prev_close)
            prev_close = cr[j]
        sum_dx = 0.0
        adx = 0.0
        for j in range(di_start, n):
            h = hr[j]
            lo = lr[j]
            diff_p = h - prev_high
            diff_m = prev_low - lo
            prev_high = h
            prev_low = lo
            minus_dm -= minus_dm / period
            plus_dm -= plus_dm / period
            if diff_m > 0.0 and diff_p < diff_m:
                minus_dm += diff_m
            elif diff_p > 0.0 and diff_p > diff_m:
                plus_dm += diff_p
            tr_sum = tr_sum - tr_sum / period + _true_range(h, lo, prev_close)
            prev_close = cr[j]
            has_dx = False
            dx = 0.0
            if tr_sum > 0.0:
                minus_di = (minus_dm / tr_sum) * 100.0
                plus_di = (plus_dm / tr_sum) * 100.0
                op[j] = plus_di
                om[j] = minus_di
                di_sum = minus_di + plus_di
                if not (-_TA_EPSILON < di_sum < _TA_EPSILON):
                    dx = (abs(minus_di - plus_di) / di_sum) * 100.0
                    has_dx = True
            else:
                op[j] = 0.0
                om[j] = 0.0
            if j < adx_start:
                if has_dx:
                    sum_dx += dx
            elif j == adx_start:
                if has_dx:
                    sum_dx += dx
                adx = sum_dx / period
                oa[j] = adx
            else:
                if has_dx:
                    adx = (adx * pm1 + dx) / period
                oa[j] = adx


@njit(**_JIT_OPTIONS)
def _bbands_core(
    x: Any,
    period: int,
    nbdev_up: float,
    nbdev_dn: float,
    out_upper: Any,
    out_middle: Any,
    out_lower: Any,
) -> None:
    n_rows, n = x.shape
    inv_p = 1.0 / float(period)
    reseed_every = 32 * period
    same_dev = nbdev_up == nbdev_dn
    for r in range(n_rows):
        xr = x[r]
        ou = out_upper[r]
        omid = out_middle[r]
        ol = out_lower[r]
        b = _first_valid(xr)
        start = b + period - 1
        _fill_nan(ou, start)
        _fill_nan(omid, start)
        _fill_nan(ol, start)
        if start >= n:
            continue
        shift = xr[b]
        ma_sum = 0.0
        dev_sum = 0.0
        sq_sum = 0.0
        for j in range(b, start):
            v = xr[j]
            ma_sum += v
            d = v - shift
            dev_sum += d
            sq_sum += d * d
        countdown = reseed_every
        trailing = b
        for i in range(start, n):
            v = xr[i]
            ma_sum = v + ma_sum
            d = v - shift
            dev_sum += d
            sq_sum += d * d
            mean = inv_p * dev_sum
            variance = inv_p * sq_sum - mean * mean
            mid = ma_sum / period
            t = xr[trailing]
            ma_sum -= t
            dt = t - shift
            dt2 = dt * dt
            sq_sum -= dt2
            reseed = False
            if (inv_p * sq_sum) * 1e-6 > variance or dt2 > sq_sum * 1e6:
                reseed = True
            else:
                countdown -= 1
                if countdown == 0:
                    reseed = True
            if reseed:
                countdown = reseed_every
                ws = i - (period - 1)
                acc = 0.0
                for j in range(ws, i + 1):
                    acc += xr[j]
                shift = inv_p * acc
                dev_sum = 0.0
                sq_sum = 0.0
                for j in range(ws, i + 1):
                    d = xr[j] - shift
                    dev_sum += d
                    sq_sum += d * d
                mean = inv_p * dev_sum
                variance = inv_p * sq_sum - mean * mean
                if (inv_p * sq_sum) * 1e-12 > variance:
                    variance = 0.0
                dt = xr[ws] - shift
                dev_sum -= dt
                sq_sum -= dt * dt
            else:
                dev_sum -= dt
            trailing += 1
            sd = 0.0 if variance == 0.0 else math.sqrt(variance)
            omid[i] = mid
            if same_dev:
                band = nbdev_up * sd
                ou[i] = mid + band
                ol[i] = mid - band
            else:
                ou[i] = _fma(nbdev_up, sd, mid)
                ol[i] = mid - nbdev_dn * sd


@njit(**_JIT_OPTIONS)
def _rolling_extreme_core(x: Any, period: int, sign: float, out: Any) -> None:
    """Rolling max of ``sign * x`` times ``sign`` (``sign=-1.0`` gives the rolling min).

    van Herk / Gil-Werman, the algorithm of TA-Lib 0.8.1's MAX/MIN: the valid part of a
    row is cut in blocks of ``period`` bars starting at its first bar; each window combines
    the backward running max (within its first bar's block) from its first bar with the
    forward running max (within its last bar's block) up to its last bar.  Ties follow
    TA-Lib's ``maxsd`` rule (keep the running value unless strictly greater; the backward
    side wins the combine, so a window that is exactly one block gets the block's backward
    max as in TA-Lib), which makes even +0.0/-0.0 ties bit-identical.
    Negation is exact, so the min path mirrors TA-Lib's ``minsd`` version.
    """
    n_rows, n = x.shape
    suffix = np.empty(n)
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        b = _first_valid(xr)
        start = b + period - 1
        _fill_nan(o, start)
        if start >= n:
            continue
        # Backward running max inside each block (ties keep the later bar).
        for blk in range(b, n, period):
            end = min(blk + period, n) - 1
            cur = sign * xr[end]
            suffix[end] = cur
            for i in range(end - 1, blk - 1, -1):
                v = sign * xr[i]
                cur = v if v > cur else cur
                suffix[i] = cur
        # Forward running max inside each block (ties keep the earlier bar), combined with
        # the backward max from the window's first bar (which wins ties).
        for blk in range(b, n, period):
            end = min(blk + period, n)
            run = sign * xr[blk]
            for i in range(blk, end):
                v = sign * xr[i]
                run = v if v > run else run
                if i >= start:
                    s = suffix[i - period + 1]
                    o[i] = sign * (run if run > s else s)


@njit(**_JIT_OPTIONS)
def _rolling_std_core(x: Any, period: int, out: Any) -> None:
    """Sample standard deviation (ddof=1) over a sliding window, O(1) per bar.

    Running sums of deviations from a shift (the window mean at the last exact two-pass
    recompute) are updated incrementally; an exact recompute is forced after
    ``4 * period`` updates, when the sum of squares fell below 1/100 of its peak since
    the last recompute (an outlier left: its rounding residue would dominate), or when the
    window mean drifted so far from the shift that more than half of the sum of squares is
    mean offset (cancellation).  Together these bound the relative error to ~1e-10 in the
    worst case (4 * period * 3 eps * 100), ~1e-13 on ordinary data.
    """
    n_rows, n = x.shape
    pf = float(period)
    inv_p = 1.0 / pf
    inv_denom = 1.0 / float(period - 1)
    refresh = 4 * period
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        b = _first_valid(xr)
        start = b + period - 1
        _fill_nan(o, start)
        if start >= n:
            continue
        shift = 0.0
        s1 = 0.0
        s2 = 0.0
        s2_peak = 0.0
        steps = 0
        recompute = True
        for i in range(start, n):
            if not recompute:
                d_in = xr[i] - shift
                d_out = xr[i - period] - shift
                s1 += d_in
                s1 -= d_out
                s2 += d_in * d_in
                s2 -= d_out * d_out
                steps += 1
                if s2 > s2_peak:
                    s2_peak = s2
                if steps >= refresh or not (s2 >= 0.01 * s2_peak) or s1 * s1 > 0.5 * pf * s2:
                    recompute = True
            if recompute:
                ws = i - period + 1
                acc = 0.0
                for j in range(ws, i + 1):
                    acc += xr[j]
                shift = acc * inv_p
                s1 = 0.0
                s2 = 0.0
                for j in range(ws, i + 1):
                    d = xr[j] - shift
                    s1 += d
                    s2 += d * d
                s2_peak = s2
                steps = 0
                recompute = False
            var = (s2 - s1 * s1 * inv_p) * inv_denom
            o[i] = math.sqrt(var) if var > 0.0 else 0.0


# ---------------------------------------------------------------------------------------
# Public wrappers
# ---------------------------------------------------------------------------------------


def _as_panel(x: npt.ArrayLike, name: str = "x") -> tuple[FloatArray, bool]:
    """Return ``(2D C-contiguous float64 view/copy, input_was_1d)``."""
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim == 1:
        return arr.reshape(1, arr.shape[0]), True
    if arr.ndim == 2:
        return arr, False
    raise ValueError(f"{name} must be 1D or 2D, got {arr.ndim}D")


def _as_panels3(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, bool]:
    h, one_d = _as_panel(high, "high")
    lo, one_d_low = _as_panel(low, "low")
    c, one_d_close = _as_panel(close, "close")
    if not (h.shape == lo.shape == c.shape and one_d == one_d_low == one_d_close):
        raise ValueError(
            f"high, low and close must have the same shape, got {h.shape}, {lo.shape}, {c.shape}"
        )
    return h, lo, c, one_d


def _check_period(name: str, value: int, minimum: int) -> int:
    p = operator.index(value)
    if not minimum <= p <= _MAX_PERIOD:
        raise ValueError(f"{name} must be in [{minimum}, {_MAX_PERIOD}], got {p}")
    return p


def _check_nbdev(name: str, value: float) -> float:
    v = float(value)
    if not -_NBDEV_LIMIT <= v <= _NBDEV_LIMIT:
        raise ValueError(f"{name} must be in [-3e37, 3e37], got {v}")
    return v


def _out(panel: FloatArray, one_d: bool) -> FloatArray:
    return panel[0] if one_d else panel


def sma(x: npt.ArrayLike, period: int) -> FloatArray:
    """Simple moving average, equal to ``talib.SMA`` (period 1..100000)."""
    p = _check_period("period", period, 1)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _sma_core(xp, p, out)
    return _out(out, one_d)


def ema(x: npt.ArrayLike, period: int) -> FloatArray:
    """Exponential moving average (SMA-seeded, k = 2/(period+1)), equal to ``talib.EMA``."""
    p = _check_period("period", period, 1)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _ema_core(xp, p, out)
    return _out(out, one_d)


def rsi(x: npt.ArrayLike, period: int) -> FloatArray:
    """Wilder's RSI, equal to ``talib.RSI`` (period 2..100000; 0 on a flat window)."""
    p = _check_period("period", period, 2)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _rsi_core(xp, p, out)
    return _out(out, one_d)


def macd(
    x: npt.ArrayLike, fast: int, slow: int, signal: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(macd, macdsignal, macdhist)`` equal to ``talib.MACD``.

    fast and slow in 2..100000 (swapped when slow < fast, as TA-Lib does), signal in
    1..100000.
    """
    f = _check_period("fast", fast, 2)
    s = _check_period("slow", slow, 2)
    g = _check_period("signal", signal, 1)
    if s < f:
        f, s = s, f
    xp, one_d = _as_panel(x)
    out_macd = np.empty_like(xp)
    out_signal = np.empty_like(xp)
    out_hist = np.empty_like(xp)
    _macd_core(xp, f, s, g, out_macd, out_signal, out_hist)
    return _out(out_macd, one_d), _out(out_signal, one_d), _out(out_hist, one_d)


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int) -> FloatArray:
    """Average true range, equal to ``talib.ATR`` (period 1..100000; 1 gives TRANGE)."""
    p = _check_period("period", period, 1)
    h, lo, c, one_d = _as_panels3(high, low, close)
    out = np.empty_like(h)
    _atr_core(h, lo, c, p, out)
    return _out(out, one_d)


def dmi(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(plus_di, minus_di, adx)`` equal to ``talib.PLUS_DI``, ``MINUS_DI``, ``ADX``.

    All three use the same period, in 2..100000 (ADX's range; note TA-Lib's DI with period
    1 is a plain ratio, not a percentage, and has no ADX counterpart).  Computed in one
    pass: the DI values are the same intermediate values ADX uses internally.
    """
    p = _check_period("period", period, 2)
    h, lo, c, one_d = _as_panels3(high, low, close)
    out_plus = np.empty_like(h)
    out_minus = np.empty_like(h)
    out_adx = np.empty_like(h)
    _dmi_core(h, lo, c, p, out_plus, out_minus, out_adx)
    return _out(out_plus, one_d), _out(out_minus, one_d), _out(out_adx, one_d)


def bbands(
    x: npt.ArrayLike, period: int, nbdevup: float, nbdevdn: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(upper, middle, lower)`` equal to ``talib.BBANDS(x, period, nbdevup, nbdevdn, 0)``.

    The middle band is the SMA; the deviation is TA-Lib's population standard deviation.
    Period 2..100000, deviations multipliers in [-3e37, 3e37].
    """
    p = _check_period("period", period, 2)
    up = _check_nbdev("nbdevup", nbdevup)
    dn = _check_nbdev("nbdevdn", nbdevdn)
    xp, one_d = _as_panel(x)
    out_upper = np.empty_like(xp)
    out_middle = np.empty_like(xp)
    out_lower = np.empty_like(xp)
    _bbands_core(xp, p, up, dn, out_upper, out_middle, out_lower)
    return _out(out_upper, one_d), _out(out_middle, one_d), _out(out_lower, one_d)


def rolling_max(x: npt.ArrayLike, period: int) -> FloatArray:
    """Highest value over the last ``period`` bars, equal to ``talib.MAX`` (period >= 2)."""
    p = _check_period("period", period, 2)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _rolling_extreme_core(xp, p, 1.0, out)
    return _out(out, one_d)


def rolling_min(x: npt.ArrayLike, period: int) -> FloatArray:
    """Lowest value over the last ``period`` bars, equal to ``talib.MIN`` (period >= 2)."""
    p = _check_period("period", period, 2)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _rolling_extreme_core(xp, p, -1.0, out)
    return _out(out, one_d)


def rolling_std(x: npt.ArrayLike, period: int) -> FloatArray:
    """Sample standard deviation (ddof=1) of the last ``period`` values (period >= 2).

    NaN until ``period`` valid values exist.  Not a TA-Lib function: the reference is
    ``np.std(window, ddof=1)``, matched to ``1e-9 * max(1, |reference|)`` (exactness is
    impossible, numpy uses pairwise summation; this kernel is O(1) per bar).
    """
    p = _check_period("period", period, 2)
    xp, one_d = _as_panel(x)
    out = np.empty_like(xp)
    _rolling_std_core(xp, p, out)
    return _out(out, one_d)


def last_valid(x: npt.ArrayLike) -> FloatArray:
    """Each row's last value ``x[..., -1]`` (rows are right-aligned, so it is the newest).

    2D input gives a 1D array (one value per row); 1D input gives a 0-d array.
    """
    xp, one_d = _as_panel(x)
    if xp.shape[1] == 0:
        raise ValueError("x has no bars")
    res = np.ascontiguousarray(xp[:, -1])
    return res.reshape(()) if one_d else res


# -- the scan's fixed set, in one compiled entry point ------------------------------------------
SCAN_COLUMNS = ("SMA20", "SMA50", "SMA200", "EMA21", "RSI14", "MACD", "MACDSignal", "MACDHist",
                "ATR14", "PlusDI14", "MinusDI14", "ADX14", "BBUpper", "BBMiddle", "BBLower")


@njit(**_JIT_OPTIONS)
def _scan_last_core(o: Any, h: Any, lo: Any, c: Any, out: Any) -> None:
    """Every scan indicator's last value per row, via the same cores as the public functions
    (hence equally exact). One entry point: a fresh process loads one cached library instead
    of one per indicator, which is most of a first scan's start-up cost."""
    n_rows, n = c.shape
    if n == 0:
        for r in range(n_rows):
            for k in range(out.shape[1]):
                out[r, k] = np.nan
        return
    a = np.empty_like(c)
    b = np.empty_like(c)
    d = np.empty_like(c)
    for k, period in enumerate((20, 50, 200)):
        _sma_core(c, period, a)
        out[:, k] = a[:, n - 1]
    _ema_core(c, 21, a)
    out[:, 3] = a[:, n - 1]
    _rsi_core(c, 14, a)
    out[:, 4] = a[:, n - 1]
    _macd_core(c, 12, 26, 9, a, b, d)
    out[:, 5] = a[:, n - 1]
    out[:, 6] = b[:, n - 1]
    out[:, 7] = d[:, n - 1]
    _atr_core(h, lo, c, 14, a)
    out[:, 8] = a[:, n - 1]
    _dmi_core(h, lo, c, 14, a, b, d)
    out[:, 9] = a[:, n - 1]
    out[:, 10] = b[:, n - 1]
    out[:, 11] = d[:, n - 1]
    _bbands_core(c, 20, 2.0, 2.0, a, b, d)
    out[:, 12] = a[:, n - 1]
    out[:, 13] = b[:, n - 1]
    out[:, 14] = d[:, n - 1]


def scan_last(open_: npt.ArrayLike, high: npt.ArrayLike, low: npt.ArrayLike,
              close: npt.ArrayLike) -> dict[str, FloatArray]:
    """:data:`SCAN_COLUMNS` at each row's last bar (SMA 20/50/200, EMA 21, RSI 14, MACD
    12/26/9, ATR 14, DMI 14, BBANDS 20/2/2), each equal to its public function's last value."""
    h, lo, c, _ = _as_panels3(high, low, close)
    o, _ = _as_panel(open_)
    out = np.empty((c.shape[0], len(SCAN_COLUMNS)))
    _scan_last_core(o, h, lo, c, out)
    return {name: np.ascontiguousarray(out[:, k]) for k, name in enumerate(SCAN_COLUMNS)}
