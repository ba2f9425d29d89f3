"""The screen language's TA-Lib indicators as panel implementations (``IMPLS``) and ``ta.<name>``.

Every entry of :data:`IMPLS` is an ``Impl(bars, series_args, params) -> (N, L) float64`` (see
:mod:`technic_v4.terms.kernels`) named like the catalogue function it implements, with the
catalogue's parameter names (:mod:`technic_v4.terms.catalog`). Each runs compiled kernels over
the whole panel -- :mod:`technic_v4.indicators.kernels` (SMA, EMA, RSI, MACD, ATR, DMI, BBANDS)
and :mod:`.nb` (WMA, ROC, MOM, NATR, CCI, MFI, WILLR, OBV, STOCH, period-1 DI) -- and every row
is **bit-identical** to TA-Lib 0.8.1 (the pinned ``ta-lib`` wheel) run on that row's non-padded
bars; ``tests/terms/test_indicator_kernels.py`` checks it with ``assert_array_equal``, flat and
zero-volume windows included. There is no function here that is only close.

``ta_impl(name, output)`` is the long tail, ``ta.<name>(…)[.output]``: TA-Lib's own function run
row by row (the optional ``ta-lib`` package, imported only there), so it is TA-Lib by definition
and as fast as a Python loop over the rows allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from technic_v4.errors import ConfigError
from technic_v4.indicators import kernels as k
from technic_v4.terms.kernels import nb

FloatArray = npt.NDArray[np.float64]


class BarsLike(Protocol):
    """What an implementation reads of :class:`technic_v4.terms.kernels.Bars`."""

    @property
    def open(self) -> np.ndarray: ...
    @property
    def high(self) -> np.ndarray: ...
    @property
    def low(self) -> np.ndarray: ...
    @property
    def close(self) -> np.ndarray: ...
    @property
    def volume(self) -> np.ndarray: ...


Impl = Callable[[BarsLike, tuple[np.ndarray, ...], Mapping[str, Any]], np.ndarray]

_MAX_PERIOD = 100_000


def _panel(x: np.ndarray) -> FloatArray:
    return np.ascontiguousarray(x, dtype=np.float64)


def _period(params: Mapping[str, Any], name: str, minimum: int) -> int:
    p = int(params[name])
    if not minimum <= p <= _MAX_PERIOD:  # the checker bounds windows; this guards the kernels
        raise ConfigError("where", f"{name} must be in [{minimum}, {_MAX_PERIOD}], got {p}")
    return p


def _hlc(bars: BarsLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    return _panel(bars.high), _panel(bars.low), _panel(bars.close)


def _single(kernel: Callable[..., None], minimum: int) -> Impl:
    """An indicator of one series ``x`` and one window ``n``."""

    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        x = _panel(series[0])
        out = np.empty_like(x)
        kernel(x, _period(params, "n", minimum), out)
        return out

    return impl


def _hlc_n(kernel: Callable[..., None], minimum: int) -> Impl:
    """An indicator of the implicit high, low, close and one window ``n``."""

    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        h, lo, c = _hlc(bars)
        out = np.empty_like(c)
        kernel(h, lo, c, _period(params, "n", minimum), out)
        return out

    return impl


def _sma(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    return k.sma(_panel(series[0]), _period(params, "n", 1))


def _ema(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    return k.ema(_panel(series[0]), _period(params, "n", 1))


def _rsi(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    return k.rsi(_panel(series[0]), _period(params, "n", 2))


def _atr(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    return k.atr(*_hlc(bars), _period(params, "n", 1))


def _dmi(which: int) -> Impl:
    """PLUS_DI (0), MINUS_DI (1) or ADX (2); DI with period 1 is TA-Lib's plain ratio."""

    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        n = _period(params, "n", 2 if which == 2 else 1)
        if n == 1:
            h, lo, c = _hlc(bars)
            out = np.empty_like(c)
            nb.di1_core(h, lo, c, which == 0, out)
            return out
        return k.dmi(*_hlc(bars), n)[which]

    return impl


def _mfi(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    h, lo, c = _hlc(bars)
    out = np.empty_like(c)
    nb.mfi_core(h, lo, c, _panel(bars.volume), _period(params, "n", 2), out)
    return out


def _obv(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
    x = _panel(series[0])
    out = np.empty_like(x)
    nb.obv_core(x, _panel(bars.volume), out)
    return out


def _macd(which: int) -> Impl:
    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        return k.macd(_panel(series[0]), _period(params, "fast", 2), _period(params, "slow", 2),
                      _period(params, "signal", 1))[which]

    return impl


def _bbands(which: int) -> Impl:
    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        dev = float(params["k"])
        if not -3e37 <= dev <= 3e37:  # TA-Lib's range for the deviation multipliers
            raise ConfigError("where", f"k must be in [-3e37, 3e37], got {dev}")
        return k.bbands(_panel(series[0]), _period(params, "n", 2), dev, dev)[which]

    return impl


def _stoch(which: int) -> Impl:
    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        h, lo, c = _hlc(bars)
        out_k = np.empty_like(c)
        out_d = np.empty_like(c)
        nb.stoch_core(h, lo, c, _period(params, "fastk", 1), _period(params, "slowk", 1),
                      _period(params, "slowd", 1), out_k, out_d)
        return (out_k, out_d)[which]

    return impl


IMPLS: dict[str, Impl] = {
    "sma": _sma,
    "ema": _ema,
    "wma": _single(nb.wma_core, 1),
    "rsi": _rsi,
    "roc": _single(nb.roc_core, 1),
    "mom": _single(nb.mom_core, 1),
    "atr": _atr,
    "natr": _hlc_n(nb.natr_core, 1),
    "adx": _dmi(2),
    "plus_di": _dmi(0),
    "minus_di": _dmi(1),
    "cci": _hlc_n(nb.cci_core, 2),
    "mfi": _mfi,
    "willr": _hlc_n(nb.willr_core, 2),
    "obv": _obv,
    "macd": _macd(0),
    "macd_signal": _macd(1),
    "macd_hist": _macd(2),
    "bb_upper": _bbands(0),
    "bb_middle": _bbands(1),
    "bb_lower": _bbands(2),
    "stoch_k": _stoch(0),
    "stoch_d": _stoch(1),
}


def ta_impl(name: str, output: str | None) -> Impl:
    """``ta.<name>(…)[.output]``: TA-Lib's function run on each row's non-padded bars.

    The row's inputs are the fields TA-Lib's abstract info names, in its order: a single-series
    input (``price``, ``price0`` …) is the next of ``series_args``, a field list (``prices``) is
    read from ``bars``. Parameters come by the catalogue's lower-case names
    (:func:`technic_v4.terms.catalog.ta_function`). A row starts at the first bar where every
    input is defined; its outputs are written back right-aligned, NaN before. ``output`` picks
    one of several outputs (``aroon``'s ``aroonup``); None means the only (or first) one.
    """
    try:
        import talib
        from talib import abstract as talib_abstract
    except ImportError as e:
        from technic_v4.terms.catalog import TALIB_HINT

        raise ConfigError("where", TALIB_HINT) from e
    upper = name.upper()
    abstract: Any = talib_abstract  # its Function is not visible to mypy
    info = abstract.Function(upper).info
    func = getattr(talib, upper)
    outputs = [o.lower() for o in info["output_names"]]
    if output is None:
        which = 0
    elif output.lower() in outputs:
        which = outputs.index(output.lower())
    else:
        raise ConfigError("where", f"ta.{name.lower()} has no output {output!r}; "
                          f"it has {', '.join(outputs)}")
    ta_params: dict[str, Any] = dict(info["parameters"])
    by_lower = {p.lower(): p for p in ta_params}
    inputs: list[str | None] = []  # None: the next series argument; else a bars field
    for fields in info["input_names"].values():
        if isinstance(fields, str):
            inputs.append(None)
        else:
            inputs.extend(fields)

    def impl(bars: BarsLike, series: tuple[np.ndarray, ...], params: Mapping[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for key, value in params.items():
            ta_name = by_lower.get(key.lower())
            if ta_name is None:
                raise ConfigError("where", f"ta.{name.lower()} has no parameter {key!r}; "
                                  f"it has {', '.join(by_lower)}")
            default = ta_params[ta_name]
            kwargs[ta_name] = int(value) if isinstance(default, int) else float(value)
        args = iter(series)
        arrays = [_panel(next(args) if f is None else getattr(bars, f)) for f in inputs]
        n_rows, n_bars = arrays[0].shape
        out = np.full((n_rows, n_bars), np.nan)
        defined = np.ones((n_rows, n_bars), dtype=bool)
        for a in arrays:
            defined &= ~np.isnan(a)
        any_defined = defined.any(axis=1)
        first = np.where(any_defined, defined.argmax(axis=1), n_bars)
        for r in range(n_rows):
            b = int(first[r])
            if b >= n_bars:
                continue
            try:
                res = func(*(a[r, b:] for a in arrays), **kwargs)
            except Exception as e:  # talib reports a bad parameter as a bare Exception
                raise ConfigError("where", f"ta.{name.lower()}: {e}") from e
            out[r, b:] = res[which] if isinstance(res, tuple | list) else res
        return out

    return impl
