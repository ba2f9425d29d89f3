"""Backtest: replay a screen over history, then forward returns, factor statistics and trade
plans played out (``trades``: each plan's stop/target race, and an equal-risk portfolio)."""
