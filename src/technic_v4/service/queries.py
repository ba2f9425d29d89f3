"""What the HTTP routes answer, as plain functions of a MarketData (the CLI can call them too).

Routes in ``app.py`` only parse the request, admit it (``admission.py``) and turn these results
or their errors into HTTP; nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError
from technic_v4.indicators import kernels
from technic_v4.service.results import Outcome, column_values

SMA_PERIODS = (20, 50, 200)
DEFAULT_DAYS = 300
MAX_DAYS = 2000


class UnknownSymbol(LookupError):
    """No listing (or no bars up to the session) for the ticker."""


def history_bars(days: int) -> int:
    """Bars loaded to return ``days`` bars with every indicator defined."""
    return days + max(SMA_PERIODS) - 1


def symbol_history(md: MarketData, symbol: str, days: int = DEFAULT_DAYS,
                   as_of: dt.date | None = None) -> dict[str, Any]:
    """OHLCV of ``symbol``'s last ``days`` sessions up to ``as_of`` (default: the newest
    stored), with SMA20/50/200 and Bollinger(20, 2) series and its reference fields.

    Raises :class:`UnknownSymbol`, ``ConfigError`` (``days`` or ``as_of``) or ``DataError``
    (an empty store)."""
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError("days", f"must be between 1 and {MAX_DAYS}, got {days}")
    with md.request():
        ref = md.reference()
        row_i = int(pd.Index(ref["Symbol"]).get_indexer([symbol])[0])
        if row_i < 0:
            raise UnknownSymbol(f"unknown ticker {symbol!r}: not among the {len(ref):,} "
                                "listings of the local store")
        day = md.resolve_as_of(as_of)
        panel = md.symbols_panel([row_i], day, history_bars(days))  # this listing only
        if panel.day[0, -1] < 0:
            raise UnknownSymbol(f"{symbol} has no bars up to {day}")
        frame = panel.frame(0)
    close = frame["Close"].to_numpy(np.float64)
    ind = {f"SMA{p}": kernels.sma(close, p) if len(close) else close for p in SMA_PERIODS}
    up, mid, lo = kernels.bbands(close, 20, 2.0, 2.0)
    ind.update({"BBUpper": up, "BBMiddle": mid, "BBLower": lo})
    keep = slice(max(len(frame) - days, 0), None)
    hist = frame.iloc[keep]
    info = ref.iloc[row_i]
    return {
        "symbol": symbol, "name": info["Name"], "sector": info["Sector"],
        "industry": info["Industry"], "type": info["Type"], "exchange": info["Exchange"],
        "as_of": str(day), "bars": len(hist),
        "history": {"date": [str(d.date()) for d in hist.index],
                    **{c.lower(): column_values(hist[c]) for c in hist.columns}},
        "indicators": {k: column_values(pd.Series(v[keep])) for k, v in ind.items()},
    }


def universe_summary(ref: pd.DataFrame, out: Outcome) -> dict[str, Any]:
    """Listings as of the scan's session by sector and type, and what the default scan's
    smart filter and pre-screen kept. Counts agree with the pipeline's universe stage: a
    listing is in unless it was listed *after* the session (no list date: in)."""
    day = np.datetime64(out.as_of or "NaT", "D")
    list_date = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
    listed = ref[~(list_date > day)]
    stages = {s["stage"]: s for s in out.stats["stages"]}

    def counts(col: str) -> dict[str, int]:
        vc = listed[col].fillna("(none)").value_counts()
        return {str(k): int(v) for k, v in sorted(vc.items())}

    pre = stages.get("pre_screen", {"in": 0, "out": 0, "dropped": {}})
    sf = stages.get("smart_filter", {"in": 0, "out": 0, "dropped": {}})
    return {
        "as_of": out.as_of, "listings": len(listed), "by_sector": counts("Sector"),
        "by_type": counts("Type"),
        "smart_filter": {"in": sf["in"], "kept": sf["out"], "dropped": sf["dropped"]},
        "pre_screen": {"in": pre["in"], "passed": pre["out"], "dropped": pre["dropped"]},
        "rows": len(out), "stages": out.stats["stages"],
    }
