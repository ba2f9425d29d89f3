"""Scores from indicator columns. Every formula here is documented in README ("Scores").

All sub-scores are 0-100 where higher is more attractive for a long position. Missing inputs
(a young listing without SMA200) score as "condition not met", never as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def score(cols: Columns, reg: Regime) -> Columns:
    """Sub-scores, TechRating and RSRating (see README for every formula)."""
    c = cols["Close"]
    out: Columns = {}
    out["RSRating"] = percentile_rating(cols["RSScore"])
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
    out["TechRating"] = np.round(np.clip(raw * reg.factor, 0.0, 100.0), 2)
    return out


def signal(cols: Columns, scores: Columns, allow_shorts: bool) -> np.ndarray:
    """Signal per row; thresholds on TechRating plus trend conditions (README)."""
    tr = scores["TechRating"]
    c = cols["Close"]
    up = _gt(c, cols["SMA200"]) & _gt(cols["SMA50"], cols["SMA200"])
    down = _gt(cols["SMA200"], c) & _gt(cols["SMA200"], cols["SMA50"])
    sig = np.full(len(tr), "Avoid", dtype=object)
    sig[tr >= WATCH] = "Watch"
    sig[(tr >= LONG) & _gt(c, cols["SMA50"])] = "Long"
    sig[(tr >= STRONG_LONG) & up] = "Strong Long"
    if allow_shorts:
        sig[(tr <= SHORT) & down] = "Short"
        sig[(tr <= STRONG_SHORT) & down & _gt(cols["SMA50"], c)] = "Strong Short"
    return sig


def rationale(cols: Columns, scores: Columns, sig: np.ndarray, i: int) -> str:
    """A short sentence naming the main reasons for row ``i``'s signal."""
    c = cols["Close"][i]
    parts: list[str] = []
    sma50, sma200 = cols["SMA50"][i], cols["SMA200"][i]
    if np.isfinite(sma200) and c > sma200 and np.isfinite(sma50) and sma50 > sma200:
        parts.append("uptrend above SMA50/200")
    elif np.isfinite(sma200) and c < sma200 and np.isfinite(sma50) and sma50 < sma200:
        parts.append("downtrend below SMA50/200")
    elif not np.isfinite(sma200):
        parts.append("under 200 bars of history")
    else:
        parts.append("mixed trend")
    rs = scores["RSRating"][i]
    if np.isfinite(rs):
        parts.append(f"RS {rs:.0f}")
    rsi = cols["RSI14"][i]
    if np.isfinite(rsi) and (rsi >= 70 or rsi <= 30):
        parts.append(f"RSI {rsi:.0f} {'overbought' if rsi >= 70 else 'oversold'}")
    pfh = cols["PctFromHigh52W"][i]
    if np.isfinite(pfh) and pfh > -3:
        parts.append("near 52-week high")
    surge = cols["VolumeSurge"][i]
    if np.isfinite(surge) and surge >= 1.5:
        parts.append(f"volume {surge:.1f}x average")
    atrp = cols["ATRPct"][i]
    if np.isfinite(atrp) and atrp >= 6:
        parts.append(f"volatile (ATR {atrp:.1f}%)")
    hist = cols["MACDHist"][i]
    if np.isfinite(hist):
        parts.append("MACD rising" if hist > 0 else "MACD falling")
    return f"{sig[i]}: " + ", ".join(parts) + f"; TechRating {scores['TechRating'][i]:.0f}."
