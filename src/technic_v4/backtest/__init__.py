"""Backtesting a screen: replay it over every stored session of a range (``replay``: the scan's
rows as of each session, point in time), then measure what followed (``run``)."""

from __future__ import annotations

from technic_v4.backtest.replay import ReplayResult, replay
from technic_v4.backtest.runner import BacktestResult, run

__all__ = ["BacktestResult", "ReplayResult", "replay", "run"]
