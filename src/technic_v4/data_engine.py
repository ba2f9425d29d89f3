"""Seed front door to the data layer (``from technic_v4 import data_engine``).

Holds no logic: one process-wide :class:`~technic_v4.data.market.MarketData`, created lazily from
the settings, serves every call.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.data.adjust import DEFAULT_MODE, check_mode
from technic_v4.data.market import FEW_SYMBOLS, MarketData
from technic_v4.errors import ConfigError

_lock = threading.Lock()
_market: MarketData | None = None


def market() -> MarketData:
    """The process-wide MarketData (created on first use from ``get_settings()``)."""
    global _market
    with _lock:
        if _market is None:
            _market = MarketData()
        return _market


def current_market() -> MarketData | None:
    """The process-wide MarketData if one exists (never creates one)."""
    with _lock:
        return _market


def set_market(md: MarketData | None) -> None:
    """Replace (or with None, forget) the process-wide MarketData, closing the old store."""
    global _market
    with _lock:
        if _market is not None and _market is not md:
            _market.close()
        _market = md


def get_price_history_batch(symbols: list[str] | tuple[str, ...], days: int,
                            as_of: dt.date | str | None = None, adjust: str = DEFAULT_MODE
                            ) -> dict[str, pd.DataFrame]:
    """``{symbol: frame}``: each symbol's last ``days`` bars (sessions) up to ``as_of``.

    Frames have columns Open, High, Low, Close, Volume indexed by session date. Unknown symbols
    and symbols without bars by ``as_of`` are absent from the result. ``days`` is at most the
    number of stored sessions (ConfigError above it). A request naming few symbols loads only
    theirs; a larger one loads the whole-market panel (shared with scans).

    Prices are adjusted as of ``as_of`` (the newest stored session by default): ``adjust``
    ``"split"`` (default) divides prices before a split by its ratio and multiplies volume by
    it, only for splits with ex-date <= ``as_of`` - what a chart showed that day;
    ``"total"`` also adjusts prices for cash dividends (total-return prices, for return
    calculations; volume as ``"split"``); ``"none"`` returns the bars as traded. Another value
    is a ConfigError naming ``adjust``.
    """
    mode = check_mode(adjust)
    if isinstance(symbols, str):
        symbols = [symbols]
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ConfigError("days", f"must be a positive int (sessions), got {days!r}")
    md = market()
    with md.request():
        md.ensure_current(wait=False)  # readers never wait for another update
        bound = md.max_bars()
        if days > bound:
            raise ConfigError("days", f"{days} is more than the {bound} stored sessions; give "
                              f"at most {bound}")
        day = md.resolve_as_of(as_of)
        ref = md.reference()
        wanted = pd.Index(ref["Symbol"]).get_indexer([s.upper() for s in symbols])
        known = wanted[wanted >= 0]
        if len(known) <= FEW_SYMBOLS:
            panel = md.symbols_panel(known, day, days, adjust=mode)
            pos = np.full(len(wanted), -1)
            pos[wanted >= 0] = np.arange(len(known))
        else:
            panel = md.panel(day, days, count_rows=known, adjust=mode)
            pos = wanted
        out: dict[str, pd.DataFrame] = {}
        for sym, i in zip(symbols, pos, strict=True):
            if i >= 0 and panel.day[i, -1] >= 0:
                out[sym] = panel.frame(int(i))
        return out


def get_price_history(symbol: str, days: int, as_of: dt.date | str | None = None,
                      adjust: str = DEFAULT_MODE) -> pd.DataFrame | None:
    """One symbol's history (see :func:`get_price_history_batch`, also for ``adjust``);
    None when unknown."""
    return get_price_history_batch([symbol], days, as_of, adjust).get(symbol)


def get_cache_stats() -> dict[str, Any]:
    """Honest cache statistics: ``hit_rate`` (percent, last request), ``cache_size`` (symbol
    histories held in memory), per-layer counts, cumulative counts and vendor requests."""
    return market().stats()


def reset_cache_stats() -> None:
    market().reset_stats()


def clear_memory_cache() -> None:
    """Drop the L1 memory cache (the local store is untouched)."""
    market().clear_memory()
