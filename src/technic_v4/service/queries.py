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
    smart filter and pre-screen kept. Counts are the pipeline's universe stage's: a listing
    is in unless it was listed *after* the session or delisted before it (no list date: in)."""
    from technic_v4.pipeline import universe

    listed = ref if out.as_of is None else ref[universe(ref, dt.date.fromisoformat(
        str(out.as_of)))[1]]
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


SCREEN_FIELDS = ("where", "columns", "sort_by", "preset")


def validate_screen(obj: Any) -> dict[str, Any]:
    """Check a screen as a scan would (``where``, ``columns``, ``sort_by``, ``preset``): each
    expression's canonical key, type and sessions of history, the where's top-level clauses.
    Raises ConfigError (a ScreenError with line, column and caret for an expression)."""
    from technic_v4.config.scan import ScanConfig
    from technic_v4.config.screen import clause_text
    from technic_v4.terms.language import Screen

    if not isinstance(obj, dict):
        raise ConfigError("body", "expected a JSON object with where, columns, sort_by, preset")
    extra = sorted(set(obj) - set(SCREEN_FIELDS))
    if extra:
        raise ConfigError(extra[0], f"unknown field; valid fields: {', '.join(SCREEN_FIELDS)}")
    config = ScanConfig(**{k: v for k, v in obj.items() if v is not None})
    spec = config.screen()

    def desc(s: Screen) -> dict[str, Any]:
        return {"key": s.term.key, "type": s.type, "bars": s.bars}

    out: dict[str, Any] = {"valid": True, "where": None, "columns": {}, "sort_by": None,
                           "preset": config.preset, "bars": spec.bars}
    if spec.where is not None:
        out["where"] = {**desc(spec.where), "clauses": [
            {"text": clause_text(c.text), "key": c.key} for c in spec.where.clauses]}
    out["columns"] = {name: desc(s) for name, s in spec.columns}
    if spec.sort is not None:
        out["sort_by"] = desc(spec.sort)
    elif spec.sort_column is not None:
        out["sort_by"] = {"column": spec.sort_column}
    return out


def preset_list() -> list[dict[str, Any]]:
    """Every preset: id, name, description, source, expression and sessions needed."""
    from technic_v4.terms.language import compile
    from technic_v4.terms.presets import presets

    return [{"id": p.id, "name": p.name, "description": p.description, "source": p.source,
             "expression": p.expression,
             "bars": compile(p.expression, "preset", "bool").bars} for p in presets().values()]
