"""Compiled panel kernels of the screen language's indicators that ``indicators/kernels.py`` lacks.

WMA, ROC, MOM, NATR, CCI, MFI, WILLR, OBV, STOCH (slow %K / %D with SMA smoothing) and the
period-1 directional indicators, each reproducing the TA-Lib C library of the pinned ``ta-lib``
wheel (0.8.1) operation by operation, so that the results are bit-identical (the tests compare
with ``np.testing.assert_array_equal``). Every function here is pure numba/numpy.

Contract (the same as :mod:`technic_v4.indicators.kernels`, whose helpers are reused)
    * Inputs are C-contiguous float64 panels ``(n_rows, n_bars)``, oldest bar first, rows
      right-aligned with NaN padding on the left; a row's first valid bar is the first index
      where *every* input is non-NaN, and after it the row holds no NaN (else: unspecified).
    * Results go into caller-allocated ``out`` arrays of the same shape: NaN wherever TA-Lib
      has no value yet (TA-Lib's lookback counted from the row's first valid bar), TA-Lib's
      value elsewhere. Row ``r`` equals ``talib.FUNC(row_r[first_valid:], ...)`` written back at
      the same positions, which is also what ``talib.FUNC(row_r)`` returns (the wrapper skips
      leading NaN the same way).
    * ``njit(cache=True, nogil=True, error_model="numpy")``, never fastmath, serial over rows
      (callers may run row chunks in threads).
    * Periods are not validated here; :mod:`technic_v4.terms.kernels.indicators` checks them
      against TA-Lib's ranges (the screen checker already bounds them).

TA-Lib conventions replicated (read from its C sources, confirmed against the binary)
    * WMA: running ``periodSum``/``periodSub``, re-summed from scratch over the window at the
      first output and then at every ``8 * n``-th one (found against the 0.8.1 binary: its
      outputs ``8n - 1, 16n - 1, ...`` after the first are exact window sums), divided by the
      integer ``n (n + 1) / 2``; period 1 copies the input.
    * ROC ``(x / x[n] - 1) * 100``, 0 when ``x[n] == 0``; MOM ``x - x[n]``.
    * NATR: exactly ATR's recursion (mean true range seed, then
      ``fma(atr, (n-1)/n, tr * (1 - (n-1)/n))``, as the binary computes it although the C source
      spells three separate roundings), ``atr / close * 100`` and 0 when ``|close| < 1e-14``;
      NATR with period 1 is TRANGE itself (not normalised), as in TA-Lib.
    * CCI: typical price ``(h + l + c) / 3`` in a circular buffer summed in *buffer-slot* order
      (not bar order) for the mean and the mean absolute deviation; 0 when the deviation of the
      latest typical price or the mean deviation is within 1e-14 of zero.
    * MFI: money flow is 0 when the typical price moved by at most 1e-14 × (|tp| + |tp_prev|);
      ``100 * pos / (pos + neg)`` with the positive sum clamped into [0, total]; 0 for an
      empty window; sums reset to exactly 0 after a whole period without any flow.
    * WILLR / STOCH: highest high / lowest low tracked by index as TA-Lib does; the binary
      computes ``(hh - c) / (hh - ll) * -100`` and ``(c - ll) / (hh - ll) * 100`` (not the C
      source's division by ``(hh - ll) / ±100``, which rounds differently), 0 when
      ``hh == ll`` (a flat window). STOCH's slow %K is the SMA of fast %K and slow %D the SMA of slow %K (TA-Lib's
      SMA: running total); both start at the full lookback.
    * OBV starts at the first bar's volume and adds / subtracts each later volume on an up /
      down move of ``x`` (unchanged on ties).
    * PLUS_DI / MINUS_DI with period 1: the plain ratio ``dm / tr`` (not a percentage), 0 when
      the true range is within 1e-14 of zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from technic_v4.indicators.kernels import (
    _JIT_OPTIONS,
    _TA_EPSILON,
    _atr_core,
    _fill_nan,
    _first_valid,
    _first_valid3,
    _sma_row,
    _true_range,
)

__all__ = [
    "cci_core",
    "di1_core",
    "mfi_core",
    "mom_core",
    "natr_core",
    "obv_core",
    "roc_core",
    "stoch_core",
    "willr_core",
    "wma_core",
]


@njit(**_JIT_OPTIONS)
def _first_valid2(a: Any, b: Any) -> int:
    n = a.shape[0]
    for i in range(n):
        if not (np.isnan(a[i]) or np.isnan(b[i])):
            return i
    return n


@njit(**_JIT_OPTIONS)
def _first_valid4(a: Any, b: Any, c: Any, d: Any) -> int:
    n = a.shape[0]
    for i in range(n):
        if not (np.isnan(a[i]) or np.isnan(b[i]) or np.isnan(c[i]) or np.isnan(d[i])):
            return i
    return n


@njit(**_JIT_OPTIONS)
def _is_zero(v: float) -> bool:
    return -_TA_EPSILON < v < _TA_EPSILON


@njit(**_JIT_OPTIONS)
def wma_core(x: Any, period: int, out: Any) -> None:
    n_rows, n = x.shape
    divider = float((period * (period + 1)) >> 1)
    pf = float(period)
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        b = _first_valid(xr)
        start = b + period - 1
        _fill_nan(o, start)
        if start >= n:
            continue
        if period == 1:
            for i in range(start, n):
                o[i] = xr[i]
            continue
        period_sub = 0.0
        period_sum = 0.0
        trailing_value = 0.0
        trailing = b
        reseed_every = 8 * period
        for i in range(start, n):
            if (i - start) % reseed_every == reseed_every - 1 or i == start:
                # TA-Lib 0.8.1 re-sums the window every 8 * period outputs (bounded drift)
                period_sub = 0.0
                period_sum = 0.0
                w = 1.0
                for j in range(i - period + 1, i):
                    v = xr[j]
                    period_sub += v
                    period_sum += v * w
                    w += 1.0
                trailing_value = 0.0
            v = xr[i]
            period_sub += v
            period_sub -= trailing_value
            period_sum += v * pf
            trailing_value = xr[trailing]
            trailing += 1
            o[i] = period_sum / divider
            period_sum -= period_sub


@njit(**_JIT_OPTIONS)
def roc_core(x: Any, period: int, out: Any) -> None:
    n_rows, n = x.shape
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        start = _first_valid(xr) + period
        _fill_nan(o, start)
        for i in range(start, n):
            prev = xr[i - period]
            o[i] = ((xr[i] / prev) - 1.0) * 100.0 if prev != 0.0 else 0.0


@njit(**_JIT_OPTIONS)
def mom_core(x: Any, period: int, out: Any) -> None:
    n_rows, n = x.shape
    for r in range(n_rows):
        xr = x[r]
        o = out[r]
        start = _first_valid(xr) + period
        _fill_nan(o, start)
        for i in range(start, n):
            o[i] = xr[i] - xr[i - period]


@njit(**_JIT_OPTIONS)
def natr_core(high: Any, low: Any, close: Any, period: int, out: Any) -> None:
    """TA-Lib's NATR: its ATR (the same Wilder recursion, fma included) / close × 100, 0 where
    close is zero; NATR(1) is TA-Lib's TRANGE, without the normalisation."""
    _atr_core(high, low, close, period, out)
    if period == 1:
        return
    n_rows, n = high.shape
    for r in range(n_rows):
        for i in range(n):
            a = out[r, i]
            if a == a:  # not NaN
                c = close[r, i]
                out[r, i] = a / c * 100.0 if not _is_zero(c) else 0.0


@njit(**_JIT_OPTIONS)
def cci_core(high: Any, low: Any, close: Any, period: int, out: Any) -> None:
    n_rows, n = high.shape
    buf = np.empty(period)
    pf = float(period)
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        o = out[r]
        b = _first_valid3(hr, lr, cr)
        start = b + period - 1
        _fill_nan(o, start)
        if start >= n:
            continue
        slot = 0
        for j in range(b, start):
            buf[slot] = (hr[j] + lr[j] + cr[j]) / 3.0
            slot += 1
        for i in range(start, n):
            last = (hr[i] + lr[i] + cr[i]) / 3.0
            buf[slot] = last
            avg = 0.0
            for j in range(period):
                avg += buf[j]
            avg /= pf
            dev = 0.0
            for j in range(period):
                dev += abs(buf[j] - avg)
            d = last - avg
            if not (abs(d) <= _TA_EPSILON * (abs(last) + abs(avg))) and not _is_zero(dev):
                o[i] = d / (0.015 * (dev / pf))
            else:
                o[i] = 0.0
            slot += 1
            if slot == period:
                slot = 0


@njit(**_JIT_OPTIONS)
def mfi_core(high: Any, low: Any, close: Any, volume: Any, period: int, out: Any) -> None:
    n_rows, n = high.shape
    pos_buf = np.empty(period)
    neg_buf = np.empty(period)
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        vr = volume[r]
        o = out[r]
        b = _first_valid4(hr, lr, cr, vr)
        start = b + period
        _fill_nan(o, start)
        if start >= n:
            continue
        prev = (hr[b] + lr[b] + cr[b]) / 3.0
        pos_sum = 0.0
        neg_sum = 0.0
        null_run = 0
        slot = 0
        for i in range(b + 1, n):
            if i > start:  # the slot about to be overwritten leaves the window
                pos_sum -= pos_buf[slot]
                neg_sum -= neg_buf[slot]
            tp = (hr[i] + lr[i] + cr[i]) / 3.0
            move = tp - prev
            scale = abs(tp) + abs(prev)
            prev = tp
            flow = tp * vr[i]
            if abs(move) <= _TA_EPSILON * scale:
                flow = 0.0
            pos = 0.0 if move < 0.0 else flow
            neg = flow if move < 0.0 else 0.0
            pos_buf[slot] = pos
            neg_buf[slot] = neg
            pos_sum += pos
            neg_sum += neg
            null_run = null_run + 1 if flow == 0.0 else 0
            if null_run >= period:
                null_run = period
                pos_sum = 0.0
                neg_sum = 0.0
            if i >= start:
                total = pos_sum + neg_sum
                clamped = 0.0 if pos_sum < 0.0 else (total if pos_sum > total else pos_sum)
                o[i] = 0.0 if total <= 0.0 else 100.0 * (clamped / total)
            slot += 1
            if slot == period:
                slot = 0


@njit(**_JIT_OPTIONS)
def _fast_k_row(hr: Any, lr: Any, cr: Any, b: int, period: int, willr: bool, o: Any) -> None:
    """TA-Lib's WILLR (``willr``) or STOCH fast %K from bar ``b + period - 1`` on; the
    extremes are tracked by index exactly as TA-Lib does (a rescan when one leaves)."""
    n = hr.shape[0]
    lowest_idx = -1
    highest_idx = -1
    lowest = 0.0
    highest = 0.0
    trailing = b
    for today in range(b + period - 1, n):
        tmp = lr[today]
        if lowest_idx < trailing:
            lowest_idx = trailing
            lowest = lr[lowest_idx]
            for i in range(lowest_idx + 1, today + 1):
                tmp = lr[i]
                if tmp < lowest:
                    lowest_idx = i
                    lowest = tmp
        elif tmp <= lowest:
            lowest_idx = today
            lowest = tmp
        tmp = hr[today]
        if highest_idx < trailing:
            highest_idx = trailing
            highest = hr[highest_idx]
            for i in range(highest_idx + 1, today + 1):
                tmp = hr[i]
                if tmp > highest:
                    highest_idx = i
                    highest = tmp
        elif tmp >= highest:
            highest_idx = today
            highest = tmp
        diff = highest - lowest
        if diff != 0.0:
            if willr:
                o[today] = (highest - cr[today]) / diff * -100.0
            else:
                o[today] = (cr[today] - lowest) / diff * 100.0
        else:
            o[today] = 0.0
        trailing += 1


@njit(**_JIT_OPTIONS)
def willr_core(high: Any, low: Any, close: Any, period: int, out: Any) -> None:
    n_rows, n = high.shape
    for r in range(n_rows):
        b = _first_valid3(high[r], low[r], close[r])
        _fill_nan(out[r], b + period - 1)
        if b + period - 1 < n:
            _fast_k_row(high[r], low[r], close[r], b, period, True, out[r])


@njit(**_JIT_OPTIONS)
def stoch_core(high: Any, low: Any, close: Any, fastk: int, slowk: int, slowd: int,
               out_k: Any, out_d: Any) -> None:
    n_rows, n = high.shape
    fast = np.empty(n)
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        ok = out_k[r]
        od = out_d[r]
        b = _first_valid3(hr, lr, cr)
        start = b + (fastk - 1) + (slowk - 1) + (slowd - 1)
        _fill_nan(ok, n)
        _fill_nan(od, start)
        if start >= n:
            continue
        _fast_k_row(hr, lr, cr, b, fastk, False, fast)
        k0 = b + fastk - 1
        if slowk == 1:  # TA_MA with period 1 copies its input
            for i in range(k0, n):
                ok[i] = fast[i]
        else:
            _sma_row(fast, k0, slowk, ok)
        d0 = k0 + slowk - 1
        if slowd == 1:
            for i in range(d0, n):
                od[i] = ok[i]
        else:
            _sma_row(ok, d0, slowd, od)
        for i in range(d0, start):  # slow %K is reported from the full lookback on
            ok[i] = math.nan


@njit(**_JIT_OPTIONS)
def obv_core(x: Any, volume: Any, out: Any) -> None:
    n_rows, n = x.shape
    for r in range(n_rows):
        xr = x[r]
        vr = volume[r]
        o = out[r]
        b = _first_valid2(xr, vr)
        _fill_nan(o, b)
        if b >= n:
            continue
        obv = vr[b]
        prev = xr[b]
        for i in range(b, n):
            v = xr[i]
            if v > prev:
                obv += vr[i]
            elif v < prev:
                obv -= vr[i]
            o[i] = obv
            prev = v


@njit(**_JIT_OPTIONS)
def di1_core(high: Any, low: Any, close: Any, plus: bool, out: Any) -> None:
    """PLUS_DI (``plus``) or MINUS_DI with period 1: TA-Lib's plain ``dm / tr`` ratio."""
    n_rows, n = high.shape
    for r in range(n_rows):
        hr = high[r]
        lr = low[r]
        cr = close[r]
        o = out[r]
        b = _first_valid3(hr, lr, cr)
        _fill_nan(o, b + 1)
        for i in range(b + 1, n):
            diff_p = hr[i] - hr[i - 1]
            diff_m = lr[i - 1] - lr[i]
            dm = 0.0
            if plus:
                if diff_p > 0.0 and diff_p > diff_m:
                    dm = diff_p
            elif diff_m > 0.0 and diff_m > diff_p:
                dm = diff_m
            if dm == 0.0:
                o[i] = 0.0
                continue
            tr = _true_range(hr[i], lr[i], cr[i - 1])
            o[i] = 0.0 if _is_zero(tr) else dm / tr
