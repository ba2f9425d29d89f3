"""Backtest: replay a screen over history (``replay``: the scan's rows as of each session, point
in time), then forward returns, factor statistics and trade plans played out (``trades``: each
plan's stop/target race, and an equal-risk portfolio); ``run`` does it all."""

from __future__ import annotations

from technic_v4.backtest.replay import ReplayResult, replay
from technic_v4.backtest.runner import BacktestResult, run

__all__ = ["BacktestResult", "ReplayResult", "replay", "run"]
