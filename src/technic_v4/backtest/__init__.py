"""Backtesting a screen: replay it over history (``replay``), then measure what followed."""

from __future__ import annotations

from technic_v4.backtest.replay import ReplayResult, replay

__all__ = ["ReplayResult", "replay"]
