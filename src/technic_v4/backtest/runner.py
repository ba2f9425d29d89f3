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

import numpy as np
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
        max_hold: int = 20, max_positions: int = 10, data: MarketData | None = None,
        on_progress: Progress | None = None, cancel: Cancel | None = None,
        method: str = "auto") -> BacktestResult:
    """Replay ``config`` over the stored sessions of [start, end] (every ``every``-th) and
    analyse what followed (module docstring). ``cancel`` (callable or Event) raises
    ScanCancelled; ``on_progress(step, done, total)`` reports.

    Trade plans (``analyses["trades"]``, ``["trade_summary"]``, ``["portfolio"]``): every long
    row's Stop/Target played out from the next session's open for at most ``max_hold``
    sessions (``trades.simulate_trades``), then an equal-risk portfolio of ``risk_pct`` of
    equity per trade (``account_size`` to start) with at most ``max_positions`` open,
    same-session entries by Rank. Prices are split-adjusted as of the last stored session;
    a plan made at D is expressed in that basis (divided by the splits after D)."""
    hs = check_horizons(horizons)
    if rank_by is not None and rank_by not in rank_columns(config):
        raise ConfigError("rank_by", f"unknown numeric column {rank_by!r}; valid: "
                          f"{', '.join(rank_columns(config))}")
    for name, v in (("max_hold", max_hold), ("max_positions", max_positions)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(name, f"a whole number >= 1, got {v!r}")
    from technic_v4 import data_engine

    data = data or data_engine.market()
    rep = replay(config, start, end, every=every, data=data, on_progress=on_progress,
                 cancel=cancel, method=method)
    missing = tuple(m.rsplit(".", 1)[1] for m in ANALYSES if importlib.util.find_spec(m) is None)
    res = BacktestResult(rep, hs, rank_by, max_hold, {}, missing)
    if "trades" not in missing:
        res.analyses.update(_trades(rep, data, max_hold, max_positions))
    if "returns" not in missing and "metrics" not in missing:
        res.analyses.update(_factor_stats(rep, data, hs, rank_by))
    res.message = rep.message + (
        f" Not in this build: {', '.join(missing)} (forward returns, IC, trades)."
        if missing else "")
    return res


@dataclass
class Bars:
    """Session-aligned ``(listings, sessions)`` bars of every reference listing over every
    stored session (NaN where a listing has no bar), adjusted as of the last stored session in
    ``mode``: what the analysis kernels read."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    sessions: np.ndarray  # datetime64[D]
    last_session: np.ndarray  # per listing: its delisting session's column, -1 while listed


def aligned_bars(data: MarketData, mode: str = "split") -> Bars:
    """:class:`Bars` from the store (one panel load with every stored bar)."""
    stored = data.store.stored_sessions()
    last = stored[-1].astype(dt.date)
    ref = data.reference()
    panel = data.panel(last, len(stored), adjust=mode)
    rows = pd.Index(panel.sids).get_indexer(ref["sid"].to_numpy())
    day = panel.day[rows]
    ok = day >= 0
    col = np.searchsorted(stored.astype(np.int64), day[ok].astype(np.int64))
    r = np.nonzero(ok)[0]
    out = []
    for f in ("open", "high", "low", "close"):
        a = np.full((len(ref), len(stored)), np.nan)
        a[r, col] = getattr(panel, f)[rows][ok]
        out.append(a)
    gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]") if "Delisted" in ref \
        else np.full(len(ref), np.datetime64("NaT"), dtype="datetime64[D]")
    last_s = np.where(np.isnat(gone), -1,
                      np.searchsorted(stored, np.where(np.isnat(gone), stored[0], gone),
                                      side="right") - 1)
    return Bars(out[0], out[1], out[2], out[3], sessions=stored,
                last_session=last_s.astype(np.int64))


def _trades(rep: ReplayResult, data: MarketData, max_hold: int, max_positions: int
            ) -> dict[str, Any]:
    """Each long row's plan played out, its summary and the equal-risk portfolio."""
    tr = _module("technic_v4.backtest.trades")
    from technic_v4.plans import SHORT_SIGNALS

    bars = aligned_bars(data, "split")
    m = rep.matches
    m = m[~m["Signal"].isin(SHORT_SIGNALS)]
    ref = data.reference()
    listing = _listing_of(ref, m)  # a reused ticker: the listing trading that day
    asof = m["AsOf"].to_numpy("datetime64[D]")
    session = np.searchsorted(bars.sessions, asof)
    # Plans are priced as of their session: in the bars' basis, divide by the later splits.
    factor = _split_factor(data, ref["sid"].to_numpy(np.int32)[listing], asof,
                           bars.sessions[-1])
    trades = tr.simulate_trades(bars.open, bars.high, bars.low, bars.close, listing=listing,
                                session=session, stop=m["Stop"].to_numpy() / factor,
                                target=m["Target"].to_numpy() / factor,
                                rank=m["Rank"].to_numpy(np.float64), max_hold=max_hold,
                                last_session=bars.last_session)
    trades.insert(0, "AsOf", m["AsOf"].to_numpy())
    trades.insert(1, "Symbol", m["Symbol"].to_numpy())
    cfg = rep.config
    start = int(np.searchsorted(bars.sessions, rep.sessions.to_numpy("datetime64[D]")[0]))
    port = tr.simulate_portfolio(trades, bars.close, initial_equity=float(cfg.account_size),
                                 risk_fraction=float(cfg.risk_pct) / 100.0,
                                 max_positions=max_positions, start=start,
                                 sessions=list(pd.DatetimeIndex(bars.sessions)))
    return {"trades": trades, "trade_summary": tr.trade_summary(trades), "portfolio": port}


def _factor_stats(rep: ReplayResult, data: MarketData, horizons: tuple[int, ...],
                  rank_by: str | None) -> dict[str, Any]:
    """Forward returns of every match per horizon (from the next session's open, total return:
    splits and dividends; a delisting inside the horizon exits at the last close), their excess
    over SPY and over the equal-weight universe of the session (the listings the scan scored),
    the screen's summary per horizon, and for ``rank_by``: IC per session and its decay over
    horizons, quintile mean returns and the top-minus-bottom spread, top-quintile turnover
    (over the session's universe for TechRating/RSRating, over the matches for other
    columns)."""
    rt = _module("technic_v4.backtest.returns")
    mt = _module("technic_v4.backtest.metrics")
    from technic_v4.pipeline import BENCHMARK

    bars = aligned_bars(data, "total")
    ref = data.reference()
    n, t = bars.close.shape
    cols = np.searchsorted(bars.sessions, rep.sessions.to_numpy("datetime64[D]"))

    def mask(frame: pd.DataFrame, values: str | None = None) -> np.ndarray:
        """(N, T) of the frame's rows: True (or ``values``) at (listing, session), else
        False (NaN)."""
        li = _listing_of(ref, frame)
        si = np.searchsorted(bars.sessions, frame["AsOf"].to_numpy("datetime64[D]"))
        if values is None:
            out = np.zeros((n, t), dtype=bool)
            out[li, si] = True
            return out
        outf = np.full((n, t), np.nan)
        outf[li, si] = frame[values].to_numpy(np.float64)
        return outf

    universe, matched = mask(rep.universe), mask(rep.matches)
    last = bars.last_session
    delist_price = np.where(last >= 0, bars.close[np.arange(n), np.maximum(last, 0)], np.nan)
    spy = np.flatnonzero(ref["Symbol"].astype(str).to_numpy() == BENCHMARK)
    bench = {} if not len(spy) else {"benchmark_open": bars.open[spy[0]],
                                     "benchmark_close": bars.close[spy[0]]}
    fwd = rt.forward_return_panels(bars.open, bars.close, horizons, entry="open",
                                   delist_session=last, delist_price=delist_price,
                                   universe=universe, **bench)
    li = _listing_of(ref, rep.matches)
    si = np.searchsorted(bars.sessions, rep.matches["AsOf"].to_numpy("datetime64[D]"))
    forward = rep.matches[["AsOf", "Symbol"]].copy()
    summary = []
    for h, f in fwd.items():
        forward[f"Fwd{h}D"] = f.raw[li, si]
        over_u = f.over_universe
        forward[f"Excess{h}D"] = over_u[li, si]
        sides = {"return": f.raw, "excess_universe": over_u}
        if f.benchmark is not None:
            over_b = f.over_benchmark
            forward[f"ExcessSPY{h}D"] = over_b[li, si]
            sides["excess_spy"] = over_b
        for name, panel in sides.items():
            st = mt.screen_stats(matched[:, cols], panel[:, cols])
            summary.append({"horizon": h, "of": name, "n": st.n, "hit_rate": st.hit_rate,
                            "mean": st.mean, "median": st.median, "t_stat": st.t_stat,
                            "session_t_stat": st.session_t_stat})
    out: dict[str, Any] = {"forward": forward,
                           "summary": pd.DataFrame(summary).set_index(["horizon", "of"])}
    if rank_by is not None:
        # A score of every scored listing (TechRating, RSRating) is ranked over the session's
        # universe, as alphalens ranks a factor; any other column over the screen's rows.
        frame = rep.universe if rank_by in rep.universe.columns else rep.matches
        score = mask(frame, rank_by)[:, cols]
        prepared = mt.prepare_score(score)
        raw = {h: f.raw[:, cols] for h, f in fwd.items()}
        out["ic"] = pd.DataFrame({h: mt.information_coefficient(prepared, y)
                                  for h, y in raw.items()}, index=rep.sessions)
        out["ic_decay"] = mt.ic_decay(prepared, raw)
        buckets = mt.quantize(prepared, 5)
        out["quantiles"] = {h: mt.mean_return_by_quantile(buckets, y, 5)
                            for h, y in raw.items()}
        out["turnover"] = pd.Series(mt.quantile_turnover(buckets, 5), index=rep.sessions)
    return out


def _listing_of(ref: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """The reference row of each (AsOf, Symbol) row of a replay frame: for a ticker that names
    several listings (reused after a delisting), the one listed on the row's session and not
    delisted before it."""
    names = ref["Symbol"].astype(str).to_numpy(object)
    sym = frame["Symbol"]
    if isinstance(sym.dtype, pd.CategoricalDtype):  # the universe: each symbol once
        cats = np.asarray(sym.cat.categories, dtype=object)
        codes = sym.cat.codes.to_numpy()
    else:
        cats, inv = np.unique(sym.astype(str).to_numpy(object), return_inverse=True)
        codes = np.asarray(inv).reshape(-1)
    counts = pd.Series(names).value_counts()
    dup = set(counts.index[counts.to_numpy() > 1])
    first = pd.Index(pd.Series(names).drop_duplicates(keep="first")).get_indexer(
        pd.Index(cats))
    out = np.asarray(first[codes], dtype=np.int64)
    if dup and "Delisted" in ref:
        day = frame["AsOf"].to_numpy("datetime64[D]")
        listed = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
        gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]")
        for k, c in enumerate(cats):
            if c not in dup:
                continue
            rows = codes == k
            out[rows] = -1
            for i in np.flatnonzero(names == c):
                ok = rows & (out < 0) & (listed[i] <= day) & (np.isnat(gone[i]) | (gone[i] >= day))
                out[ok] = i
    return out


def _split_factor(data: MarketData, sids: np.ndarray, asof: np.ndarray, last: np.datetime64
                  ) -> np.ndarray:
    """Per row, the product of its listing's split ratios after its session through ``last``
    (1.0 without any; each split visits only its listing's rows)."""
    acts = data.actions().of_mode("split")
    out = np.ones(len(sids))
    d = asof.astype(np.int64)
    order = np.argsort(sids, kind="stable")
    ssorted = sids[order]
    for sid, day, ratio in zip(acts.sid, acts.day, acts.value, strict=True):
        if day > int(last.astype(np.int64)):
            continue
        lo, hi = np.searchsorted(ssorted, sid), np.searchsorted(ssorted, sid, side="right")
        rows = order[lo:hi]
        out[rows[d[rows] < day]] *= ratio
    return out


def _module(name: str) -> Any:
    """An analysis module of :data:`ANALYSES` (typed Any: it may be absent from a build)."""
    return importlib.import_module(name)


__all__ = ["DEFAULT_HORIZONS", "BacktestResult", "check_horizons", "rank_columns", "run"]
