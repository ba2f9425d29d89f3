"""Panel -> the scan's indicator columns (values at each row's last bar).

Every indicator runs once over the whole panel with the array kernels in ``kernels``; rows are
split into chunks that run on a thread pool (the kernels release the GIL). Each indicator declares
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


def _last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[:, -1])


def kernel_columns(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                      v: np.ndarray) -> Columns:
    """All kernel-based columns for one chunk of rows (pure; runs on any backend)."""
    out: Columns = dict(k.scan_last(o, h, lo, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        logret = np.log(c[:, -21:][:, 1:] / c[:, -21:][:, :-1])
        # NaN unless all 20 returns exist (fewer than 21 bars).
        out["RealizedVol20"] = (np.std(logret, axis=1, ddof=1) * np.sqrt(252.0) * 100.0
                                if logret.shape[1] == 20 else np.full(len(c), np.nan))
    return out


def compute(panel: Panel, backend: Backend | None = None,
            on_chunk: Callable[[int], None] | None = None) -> Columns:
    """Indicator columns for every row of ``panel`` (see module docstring for units)."""
    backend = backend or LocalBackend(1)
    c = panel.close
    out: Columns = {}
    if len(panel.symbols):
        arrays = tuple(getattr(panel, f) for f in ("open", "high", "low", "close", "volume"))
        parts = backend.run_chunks(kernel_columns, arrays, on_chunk)
        for key in parts[0]:
            out[key] = np.concatenate([p[key] for p in parts])
    else:
        out = kernel_columns(*(np.empty((0, 1)),) * 5)

    close = _last(c)
    out["Close"] = close
    out["Volume"] = _last(panel.volume)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["DollarVolume20"] = dollar_volume20(c, panel.volume)
        for hzn in RETURN_HORIZONS:
            out[f"Return{hzn}D"] = _ret(c, hzn) * 100.0
        out["ATRPct"] = out["ATR14"] / close * 100.0
        out["BBWidth"] = (out["BBUpper"] - out["BBLower"]) / out["BBMiddle"] * 100.0
        out["High52W"] = _nanreduce(np.fmax, panel.high[:, -WEEKS52:])
        out["Low52W"] = _nanreduce(np.fmin, panel.low[:, -WEEKS52:])
        out["PctFromHigh52W"] = (close / out["High52W"] - 1.0) * 100.0
        prev_vol = panel.volume[:, -21:-1]
        out["VolumeSurge"] = panel.volume[:, -1] / prev_vol.mean(axis=1)
        out["SwingLow"] = _nanreduce(np.fmin, panel.low[:, -SWING:])
        out["SwingHigh"] = _nanreduce(np.fmax, panel.high[:, -SWING:])
        out["RSScore"] = rs_score(c)
    out["Bars"] = panel.n_bars.astype(np.float64)
    out["LastDay"] = panel.day[:, -1].astype(np.int64)
    return out


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
