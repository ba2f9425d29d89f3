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
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from technic_v4.backtest.replay import Cancel, Progress, ReplayResult, _Ticker, replay
from technic_v4.config.scan import ScanConfig
from technic_v4.data import adjust as adj
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
    # Wall seconds of ``replay`` and of each analysis step: bars (the panel), total_return_bars,
    # cells (the rows grouped, the score ranked), horizons (forward returns and statistics of
    # every horizon), trades (plans played out and the portfolio).
    seconds_by_step: dict[str, float] = field(default_factory=dict)

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


def with_signals(where: str | None, signals: Sequence[str]) -> tuple[str | None, bool]:
    """A screen's ``where`` narrowed to rows whose Signal is one of ``signals`` (the CLI's
    ``--signal``, the API's ``signal``), and whether a short signal asks for
    ``allow_shorts``. ``where`` is checked on its own first: ``a) or (b`` would otherwise
    parenthesise into an ``or`` that drops the signal clause. ConfigError names ``signal``
    for an unknown one (the where's own error names ``where``)."""
    from technic_v4.plans import SHORT_SIGNALS
    from technic_v4.scoring.scores import SIGNALS

    if not signals:
        return where, False
    bad = sorted(set(signals) - set(SIGNALS))
    if bad:
        raise ConfigError("signal", f"unknown signal {bad[0]!r}; valid: {', '.join(SIGNALS)}")
    if where:
        ScanConfig(where=where).screen()  # alone: its own error, naming where
    clause = " or ".join(f'Signal == "{x}"' for x in signals)
    return (f"({where}) and ({clause})" if where else clause,
            any(x in SHORT_SIGNALS for x in signals))


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
    sessions (``trades.simulate_trades_by_listings``), then an equal-risk portfolio of ``risk_pct`` of
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
    secs = res.seconds_by_step
    secs["replay"] = float(rep.stats.get("seconds", 0.0))
    # Progress and cancel between the analyses too (a cancel raises ScanCancelled here).
    tick = _Ticker(on_progress, cancel)
    tick("analyses", 0, 3)
    t0 = time.perf_counter()
    grid = _Grid(data, "split")
    secs["bars"] = time.perf_counter() - t0
    tick("analyses", 1, 3)

    # Read here, so that the thread reads neither the store nor the replay's frames.
    ref, actions = data.reference(), data.actions()
    longs = _long_rows(rep) if "trades" not in missing else None

    def trades() -> dict[str, Any]:
        t0 = time.perf_counter()
        assert longs is not None
        got = _trades(rep, longs, ref, actions, grid, max_hold, max_positions)
        secs["trades"] = time.perf_counter() - t0
        return got

    # The plans play out on a thread beside the statistics (their kernels release the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="technic-trades") as pool:
        threaded = "trades" not in missing and data.settings.max_workers > 1
        played = pool.submit(trades) if threaded else None
        if "returns" not in missing and "metrics" not in missing:
            # The threads left for the horizons (the plans' thread takes one).
            workers = max(1, data.settings.max_workers - (1 if threaded else 0))
            res.analyses.update(_factor_stats(rep, data, grid, hs, rank_by, secs, workers))
        tick("analyses", 2, 3)
        if "trades" not in missing:
            res.analyses.update(played.result() if played is not None else trades())
    tick("analyses", 3, 3)
    secs.update({k: round(v, 6) for k, v in secs.items()})
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
    grid = _Grid(data, mode)
    o, h, lo, c = (grid.field(f) for f in ("open", "high", "low", "close"))
    return Bars(o, h, lo, c, sessions=grid.sessions, last_session=grid.last_session)


@njit(cache=True, nogil=True)
def _align_nb(src: Any, day: Any, rows: Any, dest: Any, col_of: Any, d0: int, by_session: bool,
              out: Any) -> None:
    """Each bar ``j`` of panel row ``rows[r]`` to its session's column of grid row
    ``dest[r]``: ``out[dest[r], col]`` (``out[col, dest[r]]`` when ``by_session``)."""
    if not by_session:
        for r in range(len(rows)):
            p = rows[r]
            if p < 0:
                continue
            for j in range(src.shape[1]):
                d = day[p, j]
                if d >= 0:
                    out[dest[r], col_of[d - d0]] = src[p, j]
        return
    # Session-major: in tiles of 64 rows x 64 bars, so reads and writes stay in cache.
    width = src.shape[1]
    for r0 in range(0, len(rows), 64):
        r1 = min(r0 + 64, len(rows))
        for j0 in range(0, width, 64):
            j1 = min(j0 + 64, width)
            for r in range(r0, r1):
                p = rows[r]
                if p < 0:
                    continue
                q = dest[r]
                for j in range(j0, j1):
                    d = day[p, j]
                    if d >= 0:
                        out[col_of[d - d0], q] = src[p, j]


class _Grid:
    """The panel of every stored bar as of the last stored session (one load, the replay's
    own when it replayed through that session: the panel files or memory serve it), and its
    fields placed on the ``(reference listings, stored sessions)`` grid one at a time."""

    def __init__(self, data: MarketData, mode: str = "split") -> None:
        stored = data.store.stored_sessions()
        self.sessions = stored
        ref = data.reference()
        self.panel = data.panel(stored[-1].astype(dt.date), len(stored), adjust=mode)
        self.actions = data.actions()
        sids = ref["sid"].to_numpy()
        self.rows = (np.arange(len(sids), dtype=np.int64)
                     if np.array_equal(self.panel.sids, sids)
                     else pd.Index(self.panel.sids).get_indexer(sids).astype(np.int64))
        days = stored.astype(np.int64)
        self.d0 = int(days[0])
        self.col_of = np.full(int(days[-1]) - self.d0 + 1, -1, dtype=np.int64)
        self.col_of[days - self.d0] = np.arange(len(days))
        gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]") if "Delisted" in ref \
            else np.full(len(ref), np.datetime64("NaT"), dtype="datetime64[D]")
        self.last_session = np.where(
            np.isnat(gone), -1,
            np.searchsorted(stored, np.where(np.isnat(gone), stored[0], gone), side="right") - 1
        ).astype(np.int64)

    def field(self, name: str, by_session: bool = False, rows: np.ndarray | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
        """The panel's ``name`` on the grid: ``(N, T)`` float64, NaN where there is no bar
        (``(T, N)`` when ``by_session``); ``rows``: only those reference listings; ``out``:
        an array of that shape to fill."""
        sel = self.rows if rows is None else self.rows[rows]
        n, t = len(sel), len(self.sessions)
        if out is None:
            out = np.full((t, n) if by_session else (n, t), np.nan)
        else:
            out.fill(np.nan)
        _align_nb(getattr(self.panel, name), self.panel.day, sel,
                  np.arange(n, dtype=np.int64), self.col_of, self.d0, by_session, out)
        return out

    def total_return(self, names: tuple[str, ...], by_session: bool = False
                     ) -> list[np.ndarray]:
        """:meth:`field` of each of ``names`` adjusted for splits and dividends
        (``"total"``), from this split panel: only the rows a dividend changes are
        re-adjusted, from their raw bars, by the adjustment a ``"total"`` panel load runs
        (the same bits, without a second 20-year panel)."""
        outs = [self.field(name, by_session) for name in names]
        p = self.panel
        if p.adjust == "total":
            return outs
        if p.adjust != "split":
            raise ValueError(f"total_return needs the split panel, not {p.adjust!r}")
        acts = self.actions.of_mode("total")
        basis = int(np.datetime64(p.as_of, "D").astype(np.int64))
        hit = adj.affected(p.sids, p.day, acts, basis)
        inv = np.full(len(p.sids), -1, dtype=np.int64)
        inv[self.rows[self.rows >= 0]] = np.flatnonzero(self.rows >= 0)
        hit = hit[inv[hit] >= 0]  # rows of the reference's listings only
        if not len(hit):
            return outs
        # A few hundred rows at a time; only the fields asked for (and the close, which
        # prices the dividends) are read: prices are adjusted field by field.
        need = {*names, "close"}
        for a in range(0, len(hit), 256):
            part = hit[a:a + 256]
            raw = {f: np.array(getattr(p, f)[part]) for f in need}
            if p.raw is not None:  # rows a split changed: their raw bars are kept beside
                at = np.minimum(np.searchsorted(p.raw.rows, part), len(p.raw.rows) - 1)
                have = p.raw.rows[at] == part
                for f in need:
                    raw[f][have] = getattr(p.raw, f)[at[have]]
            day = np.ascontiguousarray(p.day[part])
            got = adj.adjust_rows({f: raw.get(f, raw["close"]) for f in adj.FIELDS}, day,
                                  p.sids[part], acts, basis)
            for name, out in zip(names, outs, strict=True):
                _align_nb(got[name], day, np.arange(len(part), dtype=np.int64), inv[part],
                          self.col_of, self.d0, by_session, out)
        return outs


def _long_rows(rep: ReplayResult) -> tuple[pd.DataFrame, np.ndarray]:
    """The long rows' AsOf, Symbol, Stop, Target and Rank, and their listings (a reused
    ticker: the listing trading that day)."""
    from technic_v4.plans import SHORT_SIGNALS

    long = ~rep.matches["Signal"].isin(SHORT_SIGNALS).to_numpy()
    return (rep.matches[["AsOf", "Symbol", "Stop", "Target", "Rank"]][long],
            rep.match_listing[long])


def _trades(rep: ReplayResult, longs: tuple[pd.DataFrame, np.ndarray], ref: pd.DataFrame,
            actions: adj.Actions, grid: _Grid, max_hold: int, max_positions: int
            ) -> dict[str, Any]:
    """Each long row's plan played out, its summary and the equal-risk portfolio."""
    tr = _module("technic_v4.backtest.trades")
    m, listing = longs
    asof = m["AsOf"].to_numpy("datetime64[D]")
    sessions = grid.sessions
    session = np.searchsorted(sessions, asof)
    # Plans are priced as of their session: in the bars' basis, divide by the later splits.
    factor = _split_factor(actions, ref["sid"].to_numpy(np.int32)[listing], asof,
                           sessions[-1])
    chunk = 256
    buffers = {f: np.empty((chunk, len(sessions))) for f in ("open", "high", "low", "close")}

    def bars_of(rows: np.ndarray) -> list[np.ndarray]:
        # The same four buffers for every chunk: fresh 10 MB arrays are page-faulted anew.
        return [grid.field(f, rows=rows, out=b[:len(rows)]) for f, b in buffers.items()]

    trades = tr.simulate_trades_by_listings(
        bars_of, len(ref), len(sessions), chunk=chunk, listing=listing, session=session,
        stop=m["Stop"].to_numpy() / factor, target=m["Target"].to_numpy() / factor,
        rank=m["Rank"].to_numpy(np.float64), max_hold=max_hold,
        last_session=grid.last_session)
    close = grid.field("close")
    trades.insert(0, "AsOf", m["AsOf"].to_numpy())
    trades.insert(1, "Symbol", m["Symbol"].to_numpy())
    cfg = rep.config
    start = int(np.searchsorted(sessions, rep.sessions.to_numpy("datetime64[D]")[0]))
    port = tr.simulate_portfolio(trades, close, initial_equity=float(cfg.account_size),
                                 risk_fraction=float(cfg.risk_pct) / 100.0,
                                 max_positions=max_positions, start=start,
                                 sessions=list(pd.DatetimeIndex(sessions)))
    return {"trades": trades, "trade_summary": tr.trade_summary(trades), "portfolio": port}


def _session_of(frame: pd.DataFrame, sessions: pd.DatetimeIndex) -> np.ndarray:
    """Each row's position among the replayed ``sessions`` (its ``AsOf``); a frame grouped by
    session (a replay's) is read as runs of equal values."""
    asof = frame["AsOf"].to_numpy()
    keys = sessions.to_numpy().astype(asof.dtype)
    if len(asof) == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, asof[1:] != asof[:-1]])
    pos = np.searchsorted(keys, asof[first])
    if (np.diff(pos) <= 0).any():  # not grouped: one search per row
        return np.searchsorted(keys, asof).astype(np.int64)
    return np.repeat(pos, np.diff(np.r_[first, len(asof)])).astype(np.int64)


def _factor_stats(rep: ReplayResult, data: MarketData, grid: _Grid,
                  horizons: tuple[int, ...], rank_by: str | None,
                  seconds: dict[str, float], workers: int = 1) -> dict[str, Any]:
    """Forward returns of every match per horizon (from the next session's open, total return:
    splits and dividends; a delisting inside the horizon exits at the last close), their excess
    over SPY and over the equal-weight universe of the session (the listings the scan scored),
    the screen's summary per horizon, and for ``rank_by``: IC per session and its decay over
    horizons, quintile mean returns and the top-minus-bottom spread, top-quintile turnover
    (over the session's universe for TechRating/RSRating, over the matches for other
    columns).

    Computed at the replay's rows (``metrics.Cells``: session-major, listings ascending), never
    on ``(listings, sessions)`` panels of scores or returns: the same numbers as the panel
    kernels (``tests/backtest/test_runner.py`` compares them), at the memory of the
    rows."""
    rt = _module("technic_v4.backtest.returns")
    mt = _module("technic_v4.backtest.metrics")
    from technic_v4.pipeline import BENCHMARK

    t0 = time.perf_counter()
    ref = data.reference()
    n = len(ref)
    n_s = len(rep.sessions)
    # Session-major (T, N): the cells of one session read neighbouring memory.
    open_t, close_t = grid.total_return(("open", "close"), by_session=True)
    open_, close = open_t.T, close_t.T
    seconds["total_return_bars"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cols = np.searchsorted(grid.sessions, rep.sessions.to_numpy("datetime64[D]"))
    last = grid.last_session
    delist_price = np.where(last >= 0, close[np.arange(n), np.maximum(last, 0)], np.nan)
    spy = np.flatnonzero(ref["Symbol"].astype(str).to_numpy() == BENCHMARK)
    u_cells, u_order = mt.Cells.of_rows(rep.universe_listing, _session_of(rep.universe,
                                                                          rep.sessions),
                                        n, n_s)
    m_li = np.asarray(rep.match_listing, dtype=np.int64)
    m_q = _session_of(rep.matches, rep.sessions)
    by_listing = np.lexsort((m_q, m_li))  # the panel kernels' order (listing-major)
    ranked = rank_by is not None
    on_universe = ranked and rank_by in rep.universe.columns
    if ranked and not on_universe:
        s_cells, s_order = mt.Cells.of_rows(m_li, m_q, n, n_s)
    else:
        s_cells, s_order = u_cells, u_order
    score = None
    if rank_by is not None:
        frame = rep.universe if on_universe else rep.matches
        score = mt.rank_cells(s_cells, frame[rank_by].to_numpy(np.float64)[s_order])
        buckets = mt.quantize_at(score, 5)
    seconds["cells"] = time.perf_counter() - t0

    def fwd(h: int, li: np.ndarray, q: np.ndarray) -> np.ndarray:
        return rt.forward_returns_at(open_, close, h, li, cols[q], entry="open",
                                     delist_session=last, delist_price=delist_price)

    q_by_listing = m_q[by_listing]

    def horizon(h: int) -> dict[str, Any]:
        """Everything of one horizon (horizons run on threads: the kernels and NumPy's
        sorts release the GIL; each writes only its own arrays)."""
        u_fwd = fwd(h, u_cells.listing, u_cells.session)
        u_mean = rt.universe_mean_at(u_cells.start, u_fwd)
        raw = fwd(h, m_li, m_q)
        sides = {"return": raw, "excess_universe": raw - u_mean[m_q]}
        if len(spy):
            bench = rt.forward_returns(grid_row(open_, spy[0]), grid_row(close, spy[0]), h,
                                       entry="open")
            sides["excess_spy"] = raw - bench[cols[m_q]]
        got: dict[str, Any] = {"sides": sides, "summary": []}
        for name, values in sides.items():
            st = mt.screen_stats_at(q_by_listing, values[by_listing], n_s)
            got["summary"].append({"horizon": h, "of": name, "n": st.n,
                                   "hit_rate": st.hit_rate, "mean": st.mean,
                                   "median": st.median, "t_stat": st.t_stat,
                                   "session_t_stat": st.session_t_stat})
        if score is not None:
            y = u_fwd if on_universe else raw[s_order]
            got["ic"] = mt.information_coefficient_at(score, y)
            got["quantiles"] = mt.mean_return_by_quantile_at(s_cells, buckets, y, 5)
        return got

    t0 = time.perf_counter()
    workers = max(1, min(workers, len(horizons)))
    if workers == 1:
        done = [horizon(h) for h in horizons]
    else:
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix="technic-backtest") as pool:
            done = list(pool.map(horizon, horizons))
    seconds["horizons"] = time.perf_counter() - t0
    forward = rep.matches[["AsOf", "Symbol"]]  # new columns only: copy-on-write
    summary: list[dict[str, Any]] = []
    ic: dict[int, np.ndarray] = {}
    quantiles: dict[int, Any] = {}
    for h, got in zip(horizons, done, strict=True):
        forward[f"Fwd{h}D"] = got["sides"]["return"]
        forward[f"Excess{h}D"] = got["sides"]["excess_universe"]
        if "excess_spy" in got["sides"]:
            forward[f"ExcessSPY{h}D"] = got["sides"]["excess_spy"]
        summary.extend(got["summary"])
        if score is not None:
            ic[h], quantiles[h] = got["ic"], got["quantiles"]
    out: dict[str, Any] = {"forward": forward,
                           "summary": pd.DataFrame(summary).set_index(["horizon", "of"])}
    if score is not None:
        out["ic"] = pd.DataFrame(ic, index=rep.sessions)
        out["ic_decay"] = mt.ic_table(ic)
        out["quantiles"] = quantiles
        out["turnover"] = pd.Series(mt.quantile_turnover_at(s_cells, buckets, 5),
                                    index=rep.sessions)
    return out


def grid_row(a: np.ndarray, i: int) -> np.ndarray:
    """Row ``i`` of a grid array as a contiguous 1D array."""
    return np.ascontiguousarray(a[i])


def _split_factor(actions: adj.Actions, sids: np.ndarray, asof: np.ndarray,
                  last: np.datetime64) -> np.ndarray:
    """Per row, the product of its listing's split ratios after its session through ``last``
    (1.0 without any; each split visits only its listing's rows)."""
    acts = actions.of_mode("split")
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
