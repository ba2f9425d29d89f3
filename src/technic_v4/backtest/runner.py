"""``technic_v4.backtest.run``: a screen replayed over history, then what followed.

    run(config, start, end, every, horizons, rank_by, max_hold)
      1. validate (ConfigError naming ``start``/``end``/``every``/``horizons``/``rank_by``/
         ``max_hold``)
      2. replay           the scan's rows at each session (``replay.replay``)
      3. analyses         forward returns per horizon, summary, IC of ``rank_by``, trade plans
                          played out and a portfolio: by the pure kernels of ``returns``,
                          ``metrics`` and ``trades`` (when this build has them, see
                          :data:`ANALYSES`), on total-return panels of the store
A screen that never matches gives an empty, explained result (never an error).
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from technic_v4.backtest.replay import Cancel, Progress, ReplayResult, replay
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError

DEFAULT_HORIZONS = (1, 5, 21, 63)
MAX_HORIZON = 252
# The analysis kernels (pure array code, separate modules): used when present in this build.
ANALYSES = ("technic_v4.backtest.returns", "technic_v4.backtest.metrics",
            "technic_v4.backtest.trades")


@dataclass
class BacktestResult:
    """Frames only (never printed): ``matches`` (the scan's rows at each session, ``AsOf``
    first), ``universe`` (every listing scored at each session), and the analyses computed by
    this build (``analyses`` names them; ``missing`` the ones this build lacks)."""

    replay: ReplayResult
    horizons: tuple[int, ...]
    rank_by: str | None
    max_hold: int
    analyses: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    message: str = ""

    @property
    def matches(self) -> pd.DataFrame:
        return self.replay.matches

    @property
    def universe(self) -> pd.DataFrame:
        return self.replay.universe

    @property
    def stats(self) -> dict[str, Any]:
        return self.replay.stats


def check_horizons(horizons: Sequence[int] | str) -> tuple[int, ...]:
    """Distinct whole numbers of sessions in 1..MAX_HORIZON ("1,5,21" is accepted)."""
    items: Sequence[Any] = horizons.split(",") if isinstance(horizons, str) else horizons
    out: list[int] = []
    for h in items:
        try:
            v = int(str(h).strip())
        except ValueError:
            raise ConfigError("horizons", f"{h!r} is not a whole number of sessions") from None
        if not 1 <= v <= MAX_HORIZON or (not isinstance(h, str) and v != h):
            raise ConfigError("horizons", f"each horizon is a whole number of sessions in "
                              f"1..{MAX_HORIZON}, got {h!r}")
        out.append(v)
    if not out or len(set(out)) != len(out):
        raise ConfigError("horizons", f"give distinct horizons, e.g. 1,5,21,63 (got {out})")
    return tuple(out)


def rank_columns(config: ScanConfig) -> tuple[str, ...]:
    """Numeric columns of the scan's rows a statistic can rank by."""
    from technic_v4.pipeline import _STRING_COLUMNS, COLUMNS

    builtin = [c for c in COLUMNS if c not in _STRING_COLUMNS and c not in ("LastDate", "Rank")]
    user = [n for n, s in config.screen().columns if s.term.type == "number"]
    return (*builtin, *user)


def run(config: ScanConfig, start: dt.date | str, end: dt.date | str, every: int = 1,
        horizons: Sequence[int] | str = DEFAULT_HORIZONS, rank_by: str | None = None,
        max_hold: int = 20, data: MarketData | None = None,
        on_progress: Progress | None = None, cancel: Cancel | None = None,
        method: str = "auto") -> BacktestResult:
    """Replay ``config`` over the stored sessions of [start, end] (every ``every``-th) and
    analyse what followed (module docstring). ``cancel`` (callable or Event) raises
    ScanCancelled; ``on_progress(step, done, total)`` reports."""
    hs = check_horizons(horizons)
    if rank_by is not None and rank_by not in rank_columns(config):
        raise ConfigError("rank_by", f"unknown numeric column {rank_by!r}; valid: "
                          f"{', '.join(rank_columns(config))}")
    if not isinstance(max_hold, int) or isinstance(max_hold, bool) or max_hold < 1:
        raise ConfigError("max_hold", f"a whole number of sessions >= 1, got {max_hold!r}")
    rep = replay(config, start, end, every=every, data=data, on_progress=on_progress,
                 cancel=cancel, method=method)
    missing = tuple(m.rsplit(".", 1)[1] for m in ANALYSES if importlib.util.find_spec(m) is None)
    res = BacktestResult(rep, hs, rank_by, max_hold, {}, missing)
    res.message = rep.message + (
        f" Not in this build: {', '.join(missing)} (forward returns, IC, trades)."
        if missing else "")
    return res


def _module(name: str) -> Any:
    """An analysis module of :data:`ANALYSES` (typed Any: it may be absent from a build)."""
    return importlib.import_module(name)


__all__ = ["DEFAULT_HORIZONS", "BacktestResult", "check_horizons", "rank_columns", "run"]
