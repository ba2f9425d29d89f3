"""A per-symbol reference interpreter of checked terms, written plainly for the engine's tests.

It evaluates a term on ONE symbol's frame (Open..Volume indexed by session, the bars
``get_price_history_batch([symbol], days, as_of)`` returns, no padding) with 1-D numpy arrays and
TA-Lib for the indicators; weekly/monthly bars come from pandas' resample. ``run`` returns every
bar's value and an "ambiguous" mask: bars where a comparison met two numbers equal to 1e-9 but not
bit for bit (rounding decides such a comparison; the tests skip those values).

Semantics (the engine's contract): NaN where undefined, division by zero NaN, a comparison with
NaN (``!=`` included) or with a missing string False; windows holding a NaN are NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import talib

from technic_v4.terms.language.keys import Term

REF_FIELDS = {"sector": "Sector", "industry": "Industry", "type": "Type",
              "exchange": "Exchange", "symbol": "Symbol"}
TALIB_1 = {"sma": "SMA", "ema": "EMA", "wma": "WMA", "rsi": "RSI", "roc": "ROC", "mom": "MOM"}
TALIB_HLC = {"atr": "ATR", "natr": "NATR", "adx": "ADX", "plus_di": "PLUS_DI",
             "minus_di": "MINUS_DI", "cci": "CCI", "willr": "WILLR"}


def _shift(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), False if x.dtype == bool else np.nan, dtype=x.dtype)
    if n < len(x):
        out[n:] = x[:len(x) - n]
    return out


def _windows(x: np.ndarray, n: int) -> list[np.ndarray]:
    """x shifted so that element j of the window ending at each bar is ``out[j]`` (oldest
    first); bars without a full window are NaN in every shifted copy."""
    return [_shift(x, n - 1 - j) for j in range(n)]


class Reference:
    def __init__(self, frame: pd.DataFrame, ref_row: pd.Series) -> None:
        self.frame = frame
        self.ref_row = ref_row
        self.memo: dict[str, tuple[Any, np.ndarray]] = {}

    def run(self, t: Term) -> tuple[Any, np.ndarray]:
        """(values per bar or a scalar for strings/literals, ambiguous mask per bar)."""
        if t.key not in self.memo or t.op == "const":
            self.memo[t.key] = self._run(t)
        return self.memo[t.key]

    def _run(self, t: Term) -> tuple[Any, np.ndarray]:
        n_bars = len(self.frame)
        calm = np.zeros(n_bars, dtype=bool)
        if t.op == "const":
            return t.value, calm
        if t.timeframe != "daily":
            return self._timeframe(t)
        if t.op == "field":
            return self._field(t.name), calm
        kids = [self.run(a) for a in t.args]
        vals = [k[0] for k in kids]
        amb = calm.copy()
        for k in kids:
            amb |= k[1]
        if t.op == "neg":
            return -vals[0], amb
        if t.op == "not":
            return ~vals[0], amb
        if t.op == "and":
            return vals[0] & vals[1], amb
        if t.op == "or":
            return vals[0] | vals[1], amb
        if t.op in ("+", "-", "*"):
            a, b = vals
            return {"+": a + b, "-": a - b, "*": a * b}[t.op] * np.ones(n_bars), amb
        if t.op == "/":
            a, b = np.broadcast_arrays(np.asarray(vals[0], float) * np.ones(n_bars),
                                       np.asarray(vals[1], float) * np.ones(n_bars))
            out = np.full(n_bars, np.nan)
            ok = b != 0
            with np.errstate(all="ignore"):
                out[ok] = a[ok] / b[ok]
            return out, amb
        if t.op in ("<", "<=", ">", ">=", "==", "!="):
            return self._compare(t, vals[0], vals[1], amb)
        if t.op == "in":
            x = vals[0]
            options = t.param["options"]
            if isinstance(x, str) or x is None:
                return np.full(n_bars, x in options and x is not None), amb
            return np.isin(x, np.asarray(options, dtype=float)) & ~np.isnan(x), amb
        if t.op == "index":
            n = int(t.param["n"])
            x = vals[0]
            return _shift(x, n), _shift(amb, n) | amb
        return self._call(t, vals, amb)

    def _field(self, name: str) -> Any:
        f = self.frame
        if name in ("open", "high", "low", "close", "volume"):
            return f[name.capitalize()].to_numpy(float)
        if name == "dollar_volume":
            return f["Close"].to_numpy(float) * f["Volume"].to_numpy(float)
        if name == "market_cap":
            return float(self.ref_row["SharesOutstanding"]) * f["Close"].to_numpy(float)
        v = self.ref_row[REF_FIELDS[name]]
        return None if pd.isna(v) else str(v)

    def _compare(self, t: Term, a: Any, b: Any, amb: np.ndarray) -> tuple[Any, np.ndarray]:
        n_bars = len(self.frame)
        if t.args[0].type == "string":
            if a is None or b is None:
                return np.zeros(n_bars, dtype=bool), amb
            return np.full(n_bars, (a == b) if t.op == "==" else (a != b)), amb
        a = np.asarray(a, float) * np.ones(n_bars)
        b = np.asarray(b, float) * np.ones(n_bars)
        ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
               "==": np.equal, "!=": np.not_equal}
        known = ~np.isnan(a) & ~np.isnan(b)
        out = ops[t.op](a, b) & known
        with np.errstate(all="ignore"):
            close = known & (a != b) & (np.abs(a - b) <= 1e-9 * np.maximum(np.abs(a), np.abs(b)))
        return out, amb | close

    def _call(self, t: Term, vals: list[Any], amb: np.ndarray) -> tuple[Any, np.ndarray]:
        p = t.param
        n_bars = len(self.frame)
        history = np.maximum.accumulate(amb)  # a window or recursion reads the past
        f = self.frame
        h, lo, c, v = (f[k].to_numpy(float) for k in ("High", "Low", "Close", "Volume"))
        name = t.name
        if name in ("highest", "lowest", "sum", "stddev"):
            n = int(p["n"])
            ws = _windows(np.asarray(vals[0], float) * np.ones(n_bars), n)
            if name == "highest":
                return np.max(ws, axis=0), history
            if name == "lowest":
                return np.min(ws, axis=0), history
            s = np.zeros(n_bars)
            for w in ws:  # oldest first, from 0.0, like the kernel
                s += w
            if name == "sum":
                return s, history
            mean = s / n
            var = np.zeros(n_bars)
            for w in ws:
                var += (w - mean) * (w - mean)
            return np.sqrt(var / n), history
        if name == "change":
            x = np.asarray(vals[0], float) * np.ones(n_bars)
            before = _shift(x, int(p["n"]))
            out = np.full(n_bars, np.nan)
            ok = before != 0
            with np.errstate(all="ignore"):
                out[ok] = 100.0 * (x[ok] / before[ok] - 1.0)
            return out, history
        if name in ("crossed_above", "crossed_below"):
            a, b = (np.asarray(x, float) * np.ones(n_bars) for x in vals)
            if name == "crossed_below":
                a, b = b, a
            with np.errstate(invalid="ignore"):
                return (a > b) & (_shift(a, 1) <= _shift(b, 1)), history
        if name == "bars_since":
            cond = vals[0]
            out = np.full(n_bars, np.nan)
            last = -1
            for i in range(n_bars):
                if cond[i]:
                    last = i
                if last >= 0:
                    out[i] = i - last
            return out, history
        if name == "count":
            n = int(p["n"])
            cond = np.asarray(vals[0], bool) * np.ones(n_bars, dtype=bool)
            out = np.full(n_bars, np.nan)
            for i in range(n - 1, n_bars):
                out[i] = float(cond[i - n + 1:i + 1].sum())
            return out, history
        if name == "between":
            x, a, b = (np.asarray(x, float) * np.ones(n_bars) for x in vals)
            with np.errstate(invalid="ignore"):
                return (a <= x) & (x <= b), amb
        if name in TALIB_1:
            x = np.asarray(vals[0], float) * np.ones(n_bars)
            return getattr(talib, TALIB_1[name])(x, timeperiod=int(p["n"])), history
        if name in TALIB_HLC:
            return getattr(talib, TALIB_HLC[name])(h, lo, c, timeperiod=int(p["n"])), history
        if name == "mfi":
            return talib.MFI(h, lo, c, v, timeperiod=int(p["n"])), history
        if name == "obv":
            return talib.OBV(np.asarray(vals[0], float) * np.ones(n_bars), v), history
        if name.startswith("macd"):
            x = np.asarray(vals[0], float) * np.ones(n_bars)
            out = talib.MACD(x, int(p["fast"]), int(p["slow"]), int(p["signal"]))
            return out[{"macd": 0, "macd_signal": 1, "macd_hist": 2}[name]], history
        if name.startswith("bb_"):
            x = np.asarray(vals[0], float) * np.ones(n_bars)
            k = float(p["k"])  # type: ignore[arg-type]
            out = talib.BBANDS(x, int(p["n"]), k, k, 0)
            return out[{"bb_upper": 0, "bb_middle": 1, "bb_lower": 2}[name]], history
        raise NotImplementedError(name)

    def _timeframe(self, t: Term) -> tuple[Any, np.ndarray]:
        """A weekly/monthly term on each daily bar: its latest value on the bars up to it
        (computed for the last 3 bars only; NaN before -- tests read the latest values)."""
        n_bars = len(self.frame)
        out = np.full(n_bars, False if t.type == "bool" else np.nan,
                      dtype=bool if t.type == "bool" else float)
        amb = np.zeros(n_bars, dtype=bool)
        rule = "W-SUN" if t.timeframe == "weekly" else "ME"
        for i in range(max(0, n_bars - 3), n_bars):
            f = self.frame.iloc[:i + 1]
            g = f.resample(rule).agg({"Open": "first", "High": "max", "Low": "min",
                                      "Close": "last", "Volume": "sum"})
            g = g[f["Close"].resample(rule).count() > 0]
            sub = Reference(g, self.ref_row)
            daily = _as_daily(t)
            value, a = sub.run(daily)
            out[i] = np.asarray(value) if np.ndim(value) == 0 else value[-1]
            amb[i] = bool(a[-1]) if len(a) else False
        return out, amb


def _as_daily(t: Term) -> Term:
    """The same term tree with the daily timeframe (evaluated on resampled frames)."""
    from dataclasses import replace

    return replace(t, timeframe="daily", body="~" + t.key,
                   args=tuple(_as_daily(a) for a in t.args))
