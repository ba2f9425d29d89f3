"""The Rationale column is built column-wise; it must equal, byte for byte, the sentence the
per-row function it replaced wrote (kept here as the reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.scoring import scores as sc
from technic_v4.universe.gics import TYPES

Columns = dict[str, np.ndarray]
INPUTS = ("Close", "SMA50", "SMA200", "RSI14", "PctFromHigh52W", "VolumeSurge", "ATRPct",
          "MACDHist", "RSRating", "TechRating")


def rationale_reference(cols: Columns, scores: Columns, sig: np.ndarray, i: int) -> str:
    """The per-row Rationale of issue 8 (scores.rationale), verbatim."""
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


def _check(cols: Columns, sig: np.ndarray) -> int:
    rows = np.arange(len(sig))
    got = sc.rationales(cols, cols, sig, rows)
    assert got.dtype == pd.StringDtype(na_value=np.nan) and all(type(t) is str for t in got)
    want = [rationale_reference(cols, cols, sig, i) for i in rows]
    assert list(got) == want
    # Any subset, in any order, gives those rows' sentences.
    pick = rows[::-3]
    assert list(sc.rationales(cols, cols, sig, pick)) == [want[i] for i in pick]
    return len(want)


def test_rationale_equals_the_per_row_reference_on_every_row_of_the_full_market(
        full_market: MarketData) -> None:
    n, texts = 0, ""
    wide = {"types": TYPES, "allow_shorts": True, "min_price": 0, "min_dollar_volume": 0,
            "min_history": 30}
    for config in (ScanConfig(), ScanConfig(**wide),
                   ScanConfig(**wide, lookback_days=150)):  # no SMA200: "under 200 bars"
        frame = scan(config, full_market).frame
        cols = {k: frame[k].to_numpy(np.float64) for k in INPUTS}
        sig = frame["Signal"].to_numpy(object)
        assert list(frame["Rationale"]) == [rationale_reference(cols, cols, sig, i)
                                            for i in range(len(frame))]
        n += _check(cols, sig)
        texts += " ".join(frame["Rationale"])
    for part in ("uptrend", "downtrend", "mixed trend", "under 200 bars", "overbought",
                 "oversold", "near 52-week high", "x average", "volatile (ATR", "MACD rising",
                 "MACD falling", "Short:"):
        assert part in texts, part  # every branch is exercised
    assert n > 8000


def test_rationale_edges_equal_the_reference() -> None:
    """Thresholds exactly, rounding ties, NaN, infinities, -0.0 and values formatted alike."""
    nan, inf = np.nan, np.inf
    cols = {
        "Close": np.array([10, 10, nan, 10, 10, 5, 10, 10, 10, 10]),
        "SMA50": np.array([9, 11, 9, nan, 9, 9, 10, 9, 9, 9]),
        "SMA200": np.array([8, 12, 8, 8, nan, 9, 10, 8, 8, 8]),
        "RSI14": np.array([70, 30, 69.9, 30.5, 99.5, 0.5, -0.0, nan, 70.5, 29.5]),
        "PctFromHigh52W": np.array([-3, -2.9999, 0, nan, -0.0, -inf, inf, -50, 1, -3.0001]),
        "VolumeSurge": np.array([1.5, 1.49, 1.25, 1.35, inf, nan, 1.55, 2.05, 0.0, 1.65]),
        "ATRPct": np.array([6, 5.99, 6.05, 6.15, 6.25, nan, inf, 100.45, 7.0, 6.0]),
        "MACDHist": np.array([0.0, -0.0, 1e-300, -1e-300, nan, 1, -1, inf, -inf, 2]),
        "RSRating": np.array([1, 99, nan, 50, 50, 0.5, 1.5, 2.5, -0.0, 98]),
        "TechRating": np.array([0.5, 1.5, 2.5, 99.5, 100, 0, -0.0, 64.49, 64.5, nan]),
    }
    sig = np.array(["Watch", "Avoid", "Long", "Strong Long", "Short", "Strong Short",
                    "Watch", "Avoid", "Long", "Watch"], dtype=object)
    assert _check(cols, sig) == 10
    assert len(sc.rationales(cols, cols, sig, np.array([], dtype=np.int64))) == 0


_value = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 0.5, 1.5, 6.0, 30.0, 70.0, -3.0, 1.45, 1.55, 6.05, 64.5])


@given(st.lists(st.tuples(*[_value] * len(INPUTS), st.sampled_from(sc.SIGNALS)),
                min_size=1, max_size=40))
def test_rationale_equals_the_reference_on_any_values(rows: list[tuple]) -> None:
    cols = {k: np.array([r[j] for r in rows], dtype=np.float64) for j, k in enumerate(INPUTS)}
    sig = np.array([r[-1] for r in rows], dtype=object)
    _check(cols, sig)
