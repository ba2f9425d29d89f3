"""Screen backtests: replay a screen or score over every stored session and measure what followed.

``replay`` gives the scan's rows as of each session (point in time, exact); ``returns`` turns
price panels into forward returns per horizon; ``metrics`` turns a score or a boolean screen plus
those returns into IC, quantile spreads, turnover and hit rates; ``trades`` plays out trade plans
(each plan's stop/target race, and an equal-risk portfolio). ``run`` does it all.
"""

from __future__ import annotations

from technic_v4.backtest.replay import ReplayResult, replay
from technic_v4.backtest.runner import BacktestResult, run

__all__ = ["BacktestResult", "ReplayResult", "replay", "run"]
