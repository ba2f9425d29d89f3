from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from technic_v4.scoring import scores as sc


def _path(*segments: tuple[int, float, float]) -> np.ndarray:
    """A continuous price path from (sessions, drift, noise) segments of log returns."""
    rng = np.random.default_rng(0)
    r = np.concatenate([d + v * rng.standard_normal(n) for n, d, v in segments])
    return 100 * np.exp(np.cumsum(r))


def test_regime_bull_bear_sideways() -> None:
    assert sc.regime(_path((300, 0.002, 0.005))).trend == "BULL"
    assert sc.regime(_path((300, -0.002, 0.005))).trend == "BEAR"
    assert sc.regime(_path((260, 0.002, 0.002), (40, -0.004, 0.002))).trend == "SIDEWAYS"


def test_regime_volatility_compares_20_with_60_sessions() -> None:
    assert sc.regime(_path((280, 0.0, 0.005), (20, 0.0, 0.03))).volatility == "HIGH"
    assert sc.regime(_path((280, 0.0, 0.03), (20, 0.0, 0.004))).volatility == "LOW"
    assert sc.regime(_path((300, 0.0, 0.01))).volatility == "NORMAL"


def test_regime_without_enough_history_is_sideways() -> None:
    r = sc.regime(_path((100, 0.01, 0.0)))
    assert (r.trend, r.volatility) == ("SIDEWAYS", "NORMAL")
    assert r.factor == sc.REGIME_FACTOR["SIDEWAYS"]


@given(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=1, max_size=300))
def test_percentile_rating_properties(xs: list[float]) -> None:
    x = np.array(xs)
    r = sc.percentile_rating(x)
    ok = np.isfinite(x)
    assert np.array_equal(np.isnan(r), ~ok)
    assert ((r[ok] >= 1) & (r[ok] <= 99)).all()
    # monotone: a larger value never gets a smaller rating; equal values share one
    v, rr = x[ok], r[ok]
    for i in range(min(len(v), 40)):
        assert (rr[v > v[i]] >= rr[i]).all()
        assert (rr[v == v[i]] == rr[i]).all()


def test_percentile_rating_spans_1_to_99() -> None:
    r = sc.percentile_rating(np.arange(1000.0))
    assert r.min() == 1 and r.max() == 99


def _cols(n: int, **over: float) -> dict[str, np.ndarray]:
    base = {"Close": 110.0, "SMA20": 105.0, "SMA50": 100.0, "SMA200": 90.0, "PlusDI14": 30.0,
            "MinusDI14": 10.0, "ADX14": 40.0, "RSI14": 62.0, "MACDHist": 1.0, "VolumeSurge": 2.0,
            "ATRPct": 1.5, "BBUpper": 112.0, "BBLower": 98.0, "PctFromHigh52W": 0.0,
            "RSScore": 50.0}
    base.update(over)
    return {k: np.full(n, v) for k, v in base.items()}


def test_perfect_setup_scores_high_and_is_strong_long() -> None:
    cols = _cols(3)
    cols["RSScore"] = np.array([1.0, 2.0, 3.0])
    reg = sc.Regime("BULL", "NORMAL", 1, 1, 1, 1, 1)
    s = sc.score(cols, reg)
    assert (s["TrendScore"] == 100).all()
    assert s["TechRating"][2] > 85
    assert sc.signal(cols, s, False)[2] == "Strong Long"


def test_missing_sma200_scores_as_not_met_never_nan() -> None:
    cols = _cols(2, SMA200=np.nan)
    s = sc.score(cols, sc.Regime("BULL", "NORMAL", 1, 1, 1, 1, 1))
    assert np.isfinite(s["TechRating"]).all()
    assert (s["TrendScore"] == 100 - 25 - 20).all()
    assert "Strong Long" not in sc.signal(cols, s, False)


def test_bear_regime_lowers_the_rating() -> None:
    cols = _cols(1)
    bull = sc.score(cols, sc.Regime("BULL", "NORMAL", 1, 1, 1, 1, 1))["TechRating"][0]
    bear = sc.score(cols, sc.Regime("BEAR", "HIGH", 1, 1, 1, 1, 1))["TechRating"][0]
    assert bear == pytest.approx(round(bull * 0.85 * 0.95, 2), abs=0.011)


def test_short_signals_only_when_allowed() -> None:
    cols = _cols(1, Close=80.0, SMA20=85.0, SMA50=90.0, SMA200=100.0, PlusDI14=10.0,
                 MinusDI14=30.0, RSI14=25.0, MACDHist=-1.0, VolumeSurge=0.5, ATRPct=9.0,
                 PctFromHigh52W=-40.0)
    s = sc.score(cols, sc.Regime("BEAR", "HIGH", 1, 1, 1, 1, 1))
    assert sc.signal(cols, s, False)[0] == "Avoid"
    assert sc.signal(cols, s, True)[0] in ("Short", "Strong Short")


def test_rationale_names_the_reasons() -> None:
    cols = _cols(1, RSI14=75.0, VolumeSurge=2.5)
    cols["ATR14"] = np.array([1.0])
    s = sc.score(cols, sc.Regime("BULL", "NORMAL", 1, 1, 1, 1, 1))
    sig = sc.signal(cols, s, False)
    text = sc.rationales(cols, s, sig, np.array([0]))[0]
    assert text.startswith(sig[0] + ":")
    for part in ("uptrend", "RSI 75 overbought", "volume 2.5x", "near 52-week high"):
        assert part in text


def test_signal_codes_name_the_signals() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    cols = {k: rng.uniform(50, 150, n) for k in ("Close", "SMA50", "SMA200")}
    cols["SMA200"][::7] = np.nan
    s = {"TechRating": rng.uniform(0, 100, n)}
    for shorts in (False, True):
        code = sc.signal_codes(cols, s, shorts)
        assert code.dtype == np.int8
        names = sc.signal(cols, s, shorts)
        assert list(names) == [sc.SIGNALS[c] for c in code]
        assert set(names) == set(sc.SIGNALS) if shorts else not {"Short", "Strong Short"} & set(
            names)
