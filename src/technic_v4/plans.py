"""Trade plans: entry, stop, target, reward/risk and position size (formulas in README).

Long side (every row that is not a short signal):
    Entry  = Close
    Stop   = clamp(SwingLow10 - 0.25*ATR, Entry - max_stop_atr*ATR, Entry - min_stop_atr*ATR)
    Target = Entry + target_rr * (Entry - Stop)
Short side mirrors it with the 10-bar swing high. Size in whole shares:
    floor(min(account*risk_pct% / risk_per_share, max_adv_pct% * DollarVolume20 / Entry,
              account / Entry))
A plan is NaN only when its inputs are (no ATR: under 15 bars), never for a Long row that passed
the pre-screen (the pre-screen requires the history).
"""

from __future__ import annotations

import numpy as np

Columns = dict[str, np.ndarray]

SHORT_SIGNALS = ("Short", "Strong Short")
SHORT_CODES = np.array([4, 5], dtype=np.int8)  # their positions in scores.SIGNALS


def plans(cols: Columns, sig: np.ndarray, *, account_size: float, risk_pct: float,
          target_rr: float, min_stop_atr: float, max_stop_atr: float,
          max_adv_pct: float) -> Columns:
    """``sig``: signal names, or int8 codes into ``scores.SIGNALS`` (``signal_codes``)."""
    entry = cols["Close"].astype(np.float64)
    atr = cols["ATR14"]
    short = np.isin(sig, SHORT_CODES if sig.dtype == np.int8 else SHORT_SIGNALS)
    with np.errstate(invalid="ignore", divide="ignore"):
        long_stop = np.clip(cols["SwingLow"] - 0.25 * atr, entry - max_stop_atr * atr,
                            entry - min_stop_atr * atr)
        short_stop = np.clip(cols["SwingHigh"] + 0.25 * atr, entry + min_stop_atr * atr,
                             entry + max_stop_atr * atr)
        stop = np.where(short, short_stop, long_stop)
        # A stop at or below zero is no stop: cap the risk at 95 % of the price.
        stop = np.round(np.where(~short & (stop <= 0), entry * 0.05, stop), 4)
        entry = np.round(entry, 4)
        risk = np.abs(entry - stop)
        target = np.where(short, np.maximum(entry - target_rr * risk, entry * 0.01),
                          entry + target_rr * risk)
        rr = np.abs(target - entry) / risk
        by_risk = account_size * risk_pct / 100.0 / risk
        by_liquidity = max_adv_pct / 100.0 * cols["DollarVolume20"] / entry
        by_cash = account_size / entry
        size = np.floor(np.fmin(np.fmin(by_risk, by_liquidity), by_cash))
    ok = np.isfinite(stop) & np.isfinite(entry) & (risk > 0)
    nan = np.full(len(entry), np.nan)
    return {
        "Entry": np.where(ok, entry, nan),
        "Stop": np.where(ok, stop, nan),
        "Target": np.where(ok, np.round(target, 4), nan),
        "RewardRisk": np.where(ok, np.round(rr, 2), nan),
        "PositionSize": np.where(ok & np.isfinite(size), np.maximum(size, 0.0), nan),
    }
