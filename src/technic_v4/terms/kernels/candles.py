"""TA-Lib's 61 candlestick patterns over a panel: ``cdl_<name>()`` -> -100 / 0 / +100.

Exactness: each row's series is computed by TA-Lib's own C function (``TA_CDL<NAME>``, the C
library inside the ``ta-lib`` wheel) over exactly the row's real bars, asking for every bar
(``startIdx = 0``, ``endIdx = last``) — the call ``talib.CDL<NAME>(o, h, l, c)`` makes on the
bars ``get_price_history_batch`` returns. So the values are TA-Lib's, bit for bit, at every bar.
Bars before TA-Lib's first output (its lookback) and padding are NaN (``talib`` writes 0 there).

Why whole rows and not only the last bars: TA-Lib's candle averages ("BodyLong", "ShadowVeryShort"
…) are trailing sums kept by adding the newest bar's value and subtracting the oldest's, starting
where the call starts. A call that starts later sums the same bars in another order, and the
result can differ in the last bit; with prices in cents a comparison of a candle with such an
average is often an exact tie in real numbers (a body of $0.12 against 0.1 × a $12.00 range
sum), so that bit can flip the pattern. :func:`latest` is the cheaper latest-bar-only variant
(TA-Lib's own ``startIdx = endIdx = last`` call); it is not guaranteed to equal the series' last
value and the engine must not use it where exactness is promised (see its docstring).

Speed: the per-row loop runs in numba and calls the C function through its address (no Python
per row, no copies: a row's real bars are contiguous in the C-ordered panel), releasing the GIL,
so the engine can run patterns or row chunks on threads. Without the C library's address (a
``ta-lib`` build whose library cannot be located), each row goes through ``talib`` itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from technic_v4.errors import ConfigError
from technic_v4.terms.catalog import CANDLESTICKS, TALIB_HINT
from technic_v4.terms.kernels import Bars, Impl

_JIT: dict[str, Any] = {"cache": True, "nogil": True}


def _talib() -> Any:
    try:
        import talib
    except ImportError as e:
        raise ConfigError("where", TALIB_HINT) from e
    return talib


@cache
def _library() -> ctypes.CDLL | None:
    """The TA-Lib C library the ``talib`` module itself uses (loaded by importing talib)."""
    talib = _talib()
    here = os.path.dirname(talib.__file__)
    candidates = [*glob.glob(os.path.join(here, "..", "ta_lib.libs", "libta-lib*")),  # manylinux
                  *glob.glob(os.path.join(here, ".dylibs", "libta-lib*")),  # macOS wheels
                  *filter(None, (ctypes.util.find_library(n) for n in ("ta-lib", "ta_lib")))]
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@intrinsic
def _call_cdl(typingctx: Any, fn: Any, end: Any, o: Any, h: Any, lo: Any, c: Any, pen: Any,
              meta: Any, out: Any, mode: Any) -> Any:
    """``TA_CDLxxx(start, end, o, h, l, c, [penetration,] &begIdx, &nbElement, out)`` by address.

    ``mode`` bit 0: the function takes a penetration; bit 1: latest bar only (``start = end``,
    else ``start = 0``). Pointers are passed as integers (``array.ctypes.data``)."""
    sig = types.int32(types.intp, types.int32, types.intp, types.intp, types.intp, types.intp,
                      types.float64, types.intp, types.intp, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i32, ptr = ir.IntType(32), ir.IntType(8).as_pointer()
        addr, end_, o_, h_, l_, c_, pen_, meta_, out_, mode = args
        prices = [builder.inttoptr(x, ptr) for x in (o_, h_, l_, c_)]
        beg = builder.inttoptr(meta_, ptr)
        nb = builder.inttoptr(builder.add(meta_, ir.Constant(meta_.type, 4)), ptr)
        outp = builder.inttoptr(out_, ptr)
        latest = builder.icmp_signed(">=", mode, ir.Constant(mode.type, 2))
        start = builder.select(latest, end_, ir.Constant(i32, 0))
        has_pen = builder.icmp_signed("==", builder.and_(mode, ir.Constant(mode.type, 1)),
                                      ir.Constant(mode.type, 1))
        plain_t = ir.FunctionType(i32, [i32, i32, ptr, ptr, ptr, ptr, ptr, ptr, ptr])
        pen_t = ir.FunctionType(i32, [i32, i32, ptr, ptr, ptr, ptr, ir.DoubleType(), ptr, ptr,
                                      ptr])
        with builder.if_else(has_pen) as (then, otherwise):
            with then:
                f = builder.inttoptr(addr, pen_t.as_pointer())
                r1 = builder.call(f, [start, end_, *prices, pen_, beg, nb, outp])
                then_block = builder.block
            with otherwise:
                f = builder.inttoptr(addr, plain_t.as_pointer())
                r2 = builder.call(f, [start, end_, *prices, beg, nb, outp])
                else_block = builder.block
        phi = builder.phi(i32)
        phi.add_incoming(r1, then_block)
        phi.add_incoming(r2, else_block)
        return phi

    return sig, codegen


@njit(**_JIT)
def _rows(fn: int, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, pen: float,
          mode: int, out: np.ndarray) -> int:
    """Fill ``out`` row by row with TA-Lib's output; returns the first non-zero TA_RetCode."""
    n, width = c.shape
    buf = np.zeros(max(width, 1), np.int32)
    meta = np.zeros(2, np.int32)
    for r in range(n):
        s = 0  # first bar where all four prices are numbers (talib's begidx)
        while s < width and (np.isnan(o[r, s]) or np.isnan(h[r, s]) or np.isnan(lo[r, s])
                             or np.isnan(c[r, s])):
            s += 1
        m = width - s
        if m == 0:
            continue
        off = (r * width + s) * 8
        # mypy sees the intrinsic's typing signature (with typingctx), not the call's.
        ret: int = _call_cdl(  # type: ignore[call-arg]
            fn, np.int32(m - 1), o.ctypes.data + off, h.ctypes.data + off, lo.ctypes.data + off,
            c.ctypes.data + off, pen, meta.ctypes.data, buf.ctypes.data, mode)
        if ret != 0:
            return ret
        if mode >= 2:  # latest only: out is (n, 1)
            if meta[1] == 1:
                out[r, 0] = buf[0]
        else:
            for j in range(meta[1]):
                out[r, s + meta[0] + j] = buf[j]
    return 0


def _prices(bars: Bars) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(getattr(bars, f), dtype=np.float64)
                 for f in ("open", "high", "low", "close"))


def _run(name: str, bars: Bars, params: Mapping[str, Any], latest: bool) -> np.ndarray:
    default_pen = CANDLESTICKS[name][1]
    pen = float(params.get("penetration", default_pen)) if default_pen is not None else 0.0
    o, h, lo, c = _prices(bars)
    n, width = c.shape
    out = np.full((n, 1 if latest else width), np.nan)
    lib = _library()
    func = f"CDL{name.upper()}"
    if lib is None:  # no address: talib's own wrapper, row by row (same values, slower)
        talib = _talib()
        extra = () if default_pen is None else (pen,)
        for r in range(n):
            row = getattr(talib, func)(o[r], h[r], lo[r], c[r], *extra)
            if latest:
                out[r, 0] = row[-1] if np.isfinite(c[r, -1]) else np.nan
            else:
                out[r] = row
        if not latest:  # the lookback does not depend on the penetration
            _blank_lookback(out, c, CANDLESTICKS[name][0])
        return out[:, 0] if latest else out
    addr = ctypes.cast(getattr(lib, f"TA_{func}"), ctypes.c_void_p).value
    mode = (2 if latest else 0) + (default_pen is not None)
    ret = _rows(addr, o, h, lo, c, pen, mode, out)
    if ret != 0:
        raise ConfigError("where", f"cdl_{name}: TA-Lib refused the parameters (TA_RetCode "
                                   f"{ret}); check penetration (>= 0)")
    return out[:, 0] if latest else out


def _blank_lookback(out: np.ndarray, c: np.ndarray, lookback: int) -> None:
    """NaN before each row's first TA-Lib output (talib's wrapper writes 0 there)."""
    first = np.argmax(~np.isnan(c), axis=1)
    first[np.isnan(c).all(axis=1)] = c.shape[1]
    out[np.arange(c.shape[1])[None, :] < (first + lookback)[:, None]] = np.nan


def series(name: str, bars: Bars, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """``cdl_<name>`` at every bar: (N, L) float64, TA-Lib's -100/0/100, NaN before its output."""
    return _run(name, bars, params or {}, latest=False)


def latest(name: str, bars: Bars, params: Mapping[str, Any] | None = None) -> np.ndarray:
    """``cdl_<name>`` at each row's latest bar only, (N,): TA-Lib's call for the last bar alone.

    Cheap (TA-Lib reads only the pattern's lookback), but NOT guaranteed to equal
    ``series(...)[:, -1]``: TA-Lib's candle averages are then summed from a later start, which
    can flip a comparison that is a tie up to rounding (see the module docstring). Use it only
    where an approximation is acceptable."""
    return _run(name, bars, params or {}, latest=True)


def _impl(name: str) -> Impl:
    def impl(bars: Bars, args: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> np.ndarray:
        return series(name, bars, params)

    impl.__name__ = f"cdl_{name}"
    return impl


IMPLS: dict[str, Impl] = {f"cdl_{name}": _impl(name) for name in CANDLESTICKS}
