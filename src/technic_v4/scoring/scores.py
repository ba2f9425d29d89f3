"""Scores from indicator columns. Every formula here is documented in README ("Scores").

All sub-scores are 0-100 where higher is more attractive for a long position. Missing inputs
(a young listing without SMA200) score as "condition not met", never as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Columns = dict[str, np.ndarray]

SIGNALS = ("Strong Long", "Long", "Watch", "Avoid", "Short", "Strong Short")
WEIGHTS = {"TrendScore": 0.30, "MomentumScore": 0.30, "BreakoutScore": 0.15,
           "VolatilityScore": 0.15, "VolumeScore": 0.10}
REGIME_FACTOR = {"BULL": 1.0, "SIDEWAYS": 0.95, "BEAR": 0.85}
HIGH_VOL_FACTOR = 0.95
STRONG_LONG, LONG, WATCH = 78.0, 65.0, 45.0
SHORT, STRONG_SHORT = 30.0, 20.0
REGIME_MIN_BARS = 201  # SMA200 and one more close


@dataclass(frozen=True)
class Regime:
    """Market regime from the benchmark (SPY)."""

    trend: str  # BULL / BEAR / SIDEWAYS
    volatility: str  # HIGH / NORMAL / LOW
    close: float
    sma50: float
    sma200: float
    vol20: float  # annualised %, 20 sessions
    vol60: float

    @property
    def factor(self) -> float:
        f = REGIME_FACTOR[self.trend]
        return f * (HIGH_VOL_FACTOR if self.volatility == "HIGH" else 1.0)

    @property
    def label(self) -> str:
        return f"{self.trend}/{self.volatility}-VOL"

    def as_dict(self) -> dict[str, object]:
        return {"trend": self.trend, "volatility": self.volatility, "factor": self.factor,
                "close": self.close, "sma50": self.sma50, "sma200": self.sma200,
                "vol20": self.vol20, "vol60": self.vol60}


def regime(close: np.ndarray) -> Regime:
    """BULL when close > SMA50 > SMA200, BEAR when close < SMA50 < SMA200, else SIDEWAYS;
    volatility HIGH when 20-session vol > 1.25x the 60-session vol, LOW when < 0.75x."""
    c = close[np.isfinite(close)]
    if len(c) < REGIME_MIN_BARS:
        return Regime("SIDEWAYS", "NORMAL", float(c[-1]) if len(c) else np.nan, np.nan, np.nan,
                      np.nan, np.nan)
    sma50, sma200, last = float(c[-50:].mean()), float(c[-200:].mean()), float(c[-1])
    lr = np.diff(np.log(c))
    v20 = float(np.std(lr[-20:], ddof=1) * np.sqrt(252) * 100)
    v60 = float(np.std(lr[-60:], ddof=1) * np.sqrt(252) * 100)
    if last > sma50 > sma200:
        trend = "BULL"
    elif last < sma50 < sma200:
        trend = "BEAR"
    else:
        trend = "SIDEWAYS"
    vol = "HIGH" if v20 > 1.25 * v60 else "LOW" if v20 < 0.75 * v60 else "NORMAL"
    return Regime(trend, vol, last, sma50, sma200, v20, v60)


def percentile_rating(x: np.ndarray) -> np.ndarray:
    """1-99 percentile rank (ties share the average rank); NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = np.flatnonzero(np.isfinite(x))
    if len(ok) == 0:
        return out
    v = x[ok]
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    # average ranks of ties
    _, inv = np.unique(v, return_inverse=True)
    sums = np.bincount(inv, weights=ranks)
    cnts = np.bincount(inv)
    ranks = (sums / cnts)[inv]
    pct = (ranks - 0.5) / len(v)
    out[ok] = np.clip(np.round(1 + 98 * pct), 1, 99)
    return out


def _gt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(a > b) & np.isfinite(a) & np.isfinite(b)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 100.0)


def score(cols: Columns, reg: Regime, rs_rating: np.ndarray | None = None,
          factor: np.ndarray | None = None) -> Columns:
    """Sub-scores, TechRating and RSRating (see README for every formula).

    A replay scores rows of many sessions at once: ``rs_rating`` (each row's RSRating among its
    session's rows) and ``factor`` (its session's regime factor) replace what ``cols`` and
    ``reg`` would give for rows of one session."""
    c = cols["Close"]
    out: Columns = {}
    out["RSRating"] = percentile_rating(cols["RSScore"]) if rs_rating is None else rs_rating
    adx_pts = np.where(_gt(cols["PlusDI14"], cols["MinusDI14"]),
                       10.0 * np.clip(np.nan_to_num(cols["ADX14"]) / 40.0, 0.0, 1.0), 0.0)
    out["TrendScore"] = (15.0 * _gt(c, cols["SMA20"]) + 20.0 * _gt(c, cols["SMA50"])
                         + 25.0 * _gt(c, cols["SMA200"]) + 20.0 * _gt(cols["SMA50"], cols["SMA200"])
                         + 10.0 * _gt(cols["SMA20"], cols["SMA50"]) + adx_pts)
    rsi = cols["RSI14"]
    rsi_pts = _clip(100.0 - 2.5 * np.abs(rsi - 62.0))
    out["MomentumScore"] = (0.5 * np.nan_to_num(out["RSRating"], nan=0.0) + 0.3 * rsi_pts
                            + 20.0 * _gt(cols["MACDHist"], np.zeros_like(c)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["VolumeScore"] = _clip(50.0 + 25.0 * np.log2(cols["VolumeSurge"]))
        out["VolatilityScore"] = _clip(100.0 * (10.0 - cols["ATRPct"]) / 8.5)
        pct_b = (c - cols["BBLower"]) / (cols["BBUpper"] - cols["BBLower"])
    near_high = _clip(100.0 + 5.0 * cols["PctFromHigh52W"])
    out["BreakoutScore"] = 0.6 * near_high + 0.4 * _clip(100.0 * pct_b)
    raw = sum(w * out[name] for name, w in WEIGHTS.items())
    out["TechRating"] = np.round(np.clip(raw * (reg.factor if factor is None else factor),
                                         0.0, 100.0), 2)
    return out


def signal(cols: Columns, scores: Columns, allow_shorts: bool) -> np.ndarray:
    """Signal per row; thresholds on TechRating plus trend conditions (README)."""
    return SIGNAL_NAMES[signal_codes(cols, scores, allow_shorts)]


def signal_codes(cols: Columns, scores: Columns, allow_shorts: bool) -> np.ndarray:
    """:func:`signal` as int8 positions in :data:`SIGNALS` (what a replay keeps for millions
    of rows: comparing Python strings cost more than computing them)."""
    tr = scores["TechRating"]
    c = cols["Close"]
    up = _gt(c, cols["SMA200"]) & _gt(cols["SMA50"], cols["SMA200"])
    down = _gt(cols["SMA200"], c) & _gt(cols["SMA200"], cols["SMA50"])
    code = np.full(len(tr), _CODE["Avoid"], dtype=np.int8)
    code[tr >= WATCH] = _CODE["Watch"]
    code[(tr >= LONG) & _gt(c, cols["SMA50"])] = _CODE["Long"]
    code[(tr >= STRONG_LONG) & up] = _CODE["Strong Long"]
    if allow_shorts:
        code[(tr <= SHORT) & down] = _CODE["Short"]
        code[(tr <= STRONG_SHORT) & down & _gt(cols["SMA50"], c)] = _CODE["Strong Short"]
    return code


SIGNAL_NAMES = np.array(SIGNALS, dtype=object)
_CODE = {name: i for i, name in enumerate(SIGNALS)}


_TREND_TEXT = np.array([": uptrend above SMA50/200", ": downtrend below SMA50/200",
                        ": under 200 bars of history", ": mixed trend"], dtype=object)
_MACD_TEXT = np.array(["", ", MACD rising", ", MACD falling"], dtype=object)


def _formatted(x: np.ndarray, spec: str, prefix: str, suffix: str, mask: np.ndarray
               ) -> pa.Array:
    """``prefix + format(x, spec) + suffix`` where ``mask`` holds, "" elsewhere (an Arrow
    string array).

    Each distinct value is formatted once, distinct by its bits (so -0.0 and NaN keep their
    own spelling). For ``.0f`` the values are first rounded with ``np.rint``: both round the
    exact binary value half to even and keep the sign, so ``format(rint(x), ".0f")`` is
    ``format(x, ".0f")`` and a hundred distinct ratings cost a hundred calls, not thousands.
    """
    code = np.zeros(len(x), dtype=np.int64)
    text = [""]
    if mask.any():
        v = x[mask]
        if spec == ".0f":
            v = np.rint(v)
        bits, inv = np.unique(np.ascontiguousarray(v, dtype=np.float64).view(np.int64),
                              return_inverse=True)
        text += [prefix + format(u, spec) + suffix for u in bits.view(np.float64).tolist()]
        code[mask] = np.asarray(inv).reshape(-1) + 1
    return texts_of(text, code)


def texts_of(text: Any, code: np.ndarray) -> pa.Array:
    """``text[code]`` as an Arrow string array (no Python string per row)."""
    return pa.array(list(text), type=pa.string()).take(pa.array(code, type=pa.int64()))


def rationales(cols: Columns, scores: Columns, sig: np.ndarray, rows: np.ndarray | None
               ) -> pd.api.extensions.ExtensionArray:
    """A short sentence per row of ``rows`` (None: every row) naming the main reasons for its
    signal (a pandas ``str`` array, what a frame holds), e.g. ``"Long: uptrend above SMA50/200, RS 87, MACD rising; TechRating 71."``.

    Parts, in order: the trend (close and SMA50 both above SMA200 / both below / under 200
    bars / mixed), ``RS n`` when RSRating is known, ``RSI n overbought|oversold`` at >= 70 or
    <= 30, ``near 52-week high`` within 3 %, ``volume k.kx average`` at >= 1.5x,
    ``volatile (ATR k.k%)`` at >= 6 %, ``MACD rising|falling`` by the histogram's sign.
    Built column-wise: each part is a few distinct strings taken per row, joined by Arrow.
    """
    n = len(sig) if rows is None else len(rows)

    def col(d: Columns, name: str) -> np.ndarray:  # rows None: every row (no copy)
        a = np.asarray(d[name], dtype=np.float64)
        return a if rows is None else a[np.asarray(rows, dtype=np.int64)]

    c, sma50, sma200 = col(cols, "Close"), col(cols, "SMA50"), col(cols, "SMA200")
    rs, rsi, tr = col(scores, "RSRating"), col(cols, "RSI14"), col(scores, "TechRating")
    pfh, surge, atrp = col(cols, "PctFromHigh52W"), col(cols, "VolumeSurge"), col(cols, "ATRPct")
    hist = col(cols, "MACDHist")
    with np.errstate(invalid="ignore"):
        f200, f50 = np.isfinite(sma200), np.isfinite(sma50)
        up = f200 & (c > sma200) & f50 & (sma50 > sma200)
        down = f200 & (c < sma200) & f50 & (sma50 < sma200)
        trend = np.where(up, 0, np.where(down, 1, np.where(~f200, 2, 3)))
        macd = np.where(np.isfinite(hist), np.where(hist > 0, 1, 2), 0)
        if rows is None:  # a pandas ``str`` array converts without Python strings
            first = pa.array(sig, type=pa.string())
        else:
            first = pa.array(np.asarray(sig, dtype=object)[np.asarray(rows, dtype=np.int64)],
                             type=pa.string())
        parts = [
            first,
            texts_of(_TREND_TEXT, trend),
            _formatted(rs, ".0f", ", RS ", "", np.isfinite(rs)),
            _formatted(rsi, ".0f", ", RSI ", " overbought", np.isfinite(rsi) & (rsi >= 70)),
            _formatted(rsi, ".0f", ", RSI ", " oversold", np.isfinite(rsi) & (rsi <= 30)),
            texts_of(["", ", near 52-week high"],
                   (np.isfinite(pfh) & (pfh > -3)).astype(np.int64)),
            _formatted(surge, ".1f", ", volume ", "x average",
                       np.isfinite(surge) & (surge >= 1.5)),
            _formatted(atrp, ".1f", ", volatile (ATR ", "%)", np.isfinite(atrp) & (atrp >= 6)),
            texts_of(_MACD_TEXT, macd),
            _formatted(tr, ".0f", "; TechRating ", ".", np.ones(n, dtype=bool)),
        ]
    # Joined by Arrow in one pass: a million rows' sentences without a Python string each.
    joined = pc.binary_join_element_wise(*parts, "")
    return pd.array(joined, dtype=pd.StringDtype(na_value=np.nan))
