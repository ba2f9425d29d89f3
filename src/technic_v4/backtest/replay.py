"""Replay a scan over history: for every session D of [start, end] (every N), the rows that
``run_scan`` as of D with the same screen and ``lookback_days=None`` returns, from one load.

Algorithm (exact: every value equals the scan's at D; the tests compare frame by frame):

1. Load the panel as of the last replayed session with every stored bar (the width a scan with
   ``lookback_days=None`` sees) and the store's corporate actions.
2. Epochs: a row's view as of D is adjusted for the actions up to D, so between two of its
   ex-dates in the range it is one view (as of the last replayed session before the next
   ex-date). Each group of rows of one epoch is cut with ``Panel.at`` and its series computed
   once: ~(1 + actions in the range) passes per row, chunked by listings.
3. Pass A (chunks): the pre-screen inputs at every replayed session (close, dollar volume,
   bars, last bar, RSScore): (S, N) arrays.
4. Cross-sectional, vectorised over (S, N): universe at D, smart filter, market cap as of D,
   max_symbols, pre-screen; RSRating among each session's survivors; the regime from SPY.
5. Pass B (chunks): every indicator column at the survivors' (row, session) pairs
   (``series.at_pairs``); scores, signals and plans elementwise over the pairs; the screen:
   its bar-series sub-terms computed over the chunk's history and read at the pairs, the rest
   (scan columns, comparisons) evaluated over the pairs; min_tech_rating, only_tradeable.
6. Output: one sort over every kept pair (session, then TechRating or sort_by, ties by Symbol),
   top_n and Rank per session, Rationale.

Screens using ``rank``/``zscore`` (cross-sectional over one session's rows) or weekly/monthly
terms run the scan's stages once per session instead (``method="per_session"``: exact, slower;
the result's ``stats["method"]`` says which ran and why).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from technic_v4 import heap
from technic_v4.backtest import series as ser
from technic_v4.backtest.metrics import _walk_ties
from technic_v4.config.scan import ScanConfig
from technic_v4.config.screen import clause_text
from technic_v4.data import adjust as adj
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import ConfigError, DataError, ScanCancelled
from technic_v4.execution import LocalBackend
from technic_v4.plans import SHORT_SIGNALS, plans
from technic_v4.scoring import scores as sc
from technic_v4.terms.language.keys import DAILY, Term

Progress = Callable[[str, int, int], None]
Cancel = Callable[[], bool] | threading.Event

METHODS = ("auto", "series", "per_session")
CHUNK_ROWS = 256  # listings per chunk at most
MIN_CHUNK_ROWS = 32
CHUNK_PAIRS = 300_000  # (listing, session) pairs per chunk: ~200 MB of columns in pass B
SCORE_COLUMNS = ("TechRating", "RSRating")


@dataclass
class ReplayResult:
    """What a replay found. ``matches``: the scan's rows at each session (``AsOf`` first, then
    the scan's columns, in the scan's order); ``universe``: every listing the scan scored at
    each session (it passed the pre-screen), with ``AsOf``, ``Symbol``, ``Signal``, ``Close``
    and the score columns (what statistics compare the matches with); ``sessions``: the
    replayed sessions; ``regime``: the regime at each session. ``match_listing`` and
    ``universe_listing``: each row's position in the market's reference frame (the listing it
    is, even for a ticker reused by a later listing), aligned with ``matches`` and
    ``universe``."""

    config: ScanConfig
    sessions: pd.DatetimeIndex
    matches: pd.DataFrame
    universe: pd.DataFrame
    regime: pd.DataFrame
    match_listing: np.ndarray
    universe_listing: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def replay_config(config: ScanConfig) -> ScanConfig:
    """The scan a replay runs at each session: ``config`` with every stored bar
    (``lookback_days=None``) and no fixed as-of date."""
    return config.model_copy(update={"lookback_days": None, "as_of_date": None})


def replay(config: ScanConfig, start: dt.date | str, end: dt.date | str, every: int = 1,
           data: MarketData | None = None, on_progress: Progress | None = None,
           cancel: Cancel | None = None, method: str = "auto") -> ReplayResult:
    """The scan of ``config`` at every ``every``-th stored session of [start, end] (see the
    module docstring); frames only, never printing.

    ``on_progress(step, done, total)`` reports progress; ``cancel`` (a callable or a
    ``threading.Event``) stops the replay with ScanCancelled. Bad input raises ConfigError
    naming the field (``start``, ``end``, ``every``, ``method``).
    """
    from technic_v4 import data_engine

    if method not in METHODS:
        raise ConfigError("method", f"unknown replay method {method!r}; valid: "
                          f"{', '.join(METHODS)}")
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError("every", f"must be a whole number of sessions >= 1, got {every!r}")
    for name in config.columns or {}:  # the session column of every replay frame
        if name.casefold() == "asof":
            raise ConfigError(f"columns.{name}", "clashes with the replay's session column "
                              "'AsOf'; choose another name")
    cfg = replay_config(config)
    data = data or data_engine.market()
    t0 = time.perf_counter()
    ticker = _Ticker(on_progress, cancel)
    with data.request():
        data.ensure_current(wait=False)  # readers never wait for another update
        days = sessions_between(data, start, end, every)
        from technic_v4.pipeline import check_bars

        check_bars(cfg, min(data.max_bars(), len(data.sessions(days[0].astype(dt.date)))),
                   days[0].astype(dt.date))
        why = per_session_reason(cfg)
        chosen = "per_session" if method == "per_session" or (method == "auto" and why) \
            else "series"
        if chosen == "series" and why:
            raise ConfigError("method", f"series replay cannot run this screen: {why}")
        ref = data.reference()
        runner, note = None, None
        if chosen == "series" and data.settings.use_ray:  # Ray tasks, or local saying why
            from technic_v4.backtest import distributed

            runner, note = distributed.connect(data)
        t = time.perf_counter()
        as_of = days[-1].astype(dt.date)
        # On Ray each task loads its own listings' bars: the driver holds no bars.
        panel = distributed.outline(data, as_of, cfg.bars_needed) if runner is not None \
            else data.panel(as_of, cfg.bars_needed)
        load_seconds = time.perf_counter() - t
        if chosen == "series":
            matches, universe, regime, stats = _series(cfg, data, ref, panel, days, ticker,
                                                       runner)
            if note:
                stats["runner"]["fallback_reason"] = note
        else:
            matches, universe, regime, stats = _per_session(cfg, data, ref, panel, days, ticker)
        m_pos, u_pos = stats.pop("match_listing"), stats.pop("universe_listing")
    stats.update(method=chosen, per_session_reason=why or None, sessions=len(days),
                 listings=len(ref), bars=int(panel.close.shape[1]),
                 load_seconds=round(load_seconds, 6),
                 seconds=round(time.perf_counter() - t0, 6))
    idx = pd.DatetimeIndex(days.astype("datetime64[ns]"), name="AsOf")
    res = ReplayResult(cfg, idx, matches, universe, regime, m_pos, u_pos, stats)
    res.message = _message(res)
    if (stats.get("runner") or {}).get("fallback_reason"):
        res.message += f" {stats['runner']['fallback_reason']}."
    return res


def sessions_between(data: MarketData, start: dt.date | str, end: dt.date | str,
                     every: int = 1) -> np.ndarray:
    """Every ``every``-th stored session of [start, end] (datetime64[D]); ConfigError naming
    ``start`` or ``end`` outside the stored sessions or in the wrong order."""
    stored = data.store.stored_sessions()
    if len(stored) == 0:
        raise DataError("the local store is empty: run `technic data update` first")
    try:
        s, e = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    except (ValueError, TypeError) as err:
        raise ConfigError("start", f"dates are YYYY-MM-DD ({err})") from None
    first, last = stored[0].astype(dt.date), stored[-1].astype(dt.date)
    if s > e:
        raise ConfigError("start", f"{s} is after end {e}")
    if s < first:
        raise ConfigError("start", f"{s} is before the first stored session {first}")
    if e > last:
        raise ConfigError("end", f"{e} is after the latest stored session {last}")
    days = stored[(stored >= np.datetime64(s, "D")) & (stored <= np.datetime64(e, "D"))]
    if len(days) == 0:
        raise ConfigError("start", f"no stored session between {s} and {e}")
    return days[::every]


def per_session_reason(config: ScanConfig) -> str:
    """Why the screen of ``config`` cannot be replayed from series ("" when it can)."""
    for name, s in config.screen().parts:
        for t in s.terms:
            for u in t.walk():
                if u.op == "call" and u.name in ("rank", "zscore"):
                    return f"{name} uses {u.name}() (ranked across each session's listings)"
                if u.timeframe != DAILY:
                    return f"{name} uses {u.timeframe} bars"
    return ""


class _Ticker:
    def __init__(self, progress: Progress | None, cancel: Cancel | None) -> None:
        self.progress, self.cancel = progress, cancel

    def __call__(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(step, done, total)
        c = self.cancel
        if c is not None and (c.is_set() if isinstance(c, threading.Event) else c()):
            raise ScanCancelled(f"replay cancelled during {step}")


# -- per session: the scan's own stages at each D (the reference, and the fallback) -----------
def _per_session(cfg: ScanConfig, data: MarketData, ref: pd.DataFrame, panel: Panel,
                 days: np.ndarray, tick: _Ticker
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from technic_v4 import pipeline as pl

    width = panel.close.shape[1]
    sess_all = data.sessions(days[-1].astype(dt.date)).astype(np.int64)
    frames, unis, regs = [], [], []
    for q, d64 in enumerate(days):
        day = d64.astype(dt.date)
        tick("sessions", q, len(days))
        stages = pl._Stages(None, None)
        notes: list[str] = []
        view = panel.at(day, width)
        sd = sess_all[sess_all <= d64.astype(np.int64)]
        frame, reg, scored = _evaluate_one(cfg, ref, view, day, sd, stages, notes,
                                           data.shares_as_of(day))
        asof = pd.Timestamp(day)
        frames.append(frame.assign(AsOf=asof))
        unis.append(scored.assign(AsOf=asof))
        regs.append({"AsOf": asof, **reg.as_dict()})
    tick("sessions", len(days), len(days))
    matches = pd.concat(frames, ignore_index=True)
    matches = text_as_str(matches[["AsOf", *[c for c in matches.columns if c != "AsOf"]]])
    universe = pd.concat(unis, ignore_index=True)
    universe = universe[["AsOf", *[c for c in universe.columns if c != "AsOf"]]]
    universe = universe.sort_values(["AsOf", "Symbol"], kind="stable", ignore_index=True)
    names, _ = symbol_codes(ref)
    universe["Symbol"] = pd.Categorical(universe["Symbol"], categories=names)
    universe["Signal"] = pd.Categorical(universe["Signal"], categories=sc.SIGNALS)
    return matches, universe, pd.DataFrame(regs), {
        "match_listing": listing_of(ref, matches), "universe_listing": listing_of(ref, universe)}


def _evaluate_one(cfg: ScanConfig, ref: pd.DataFrame, panel: Panel, as_of: dt.date,
                  sess_days: np.ndarray, stages: Any, notes: list[str],
                  shares: np.ndarray | None) -> tuple[pd.DataFrame, sc.Regime, pd.DataFrame]:
    """``pipeline.evaluate`` (the same stages in the same order), also returning the scored
    listings (the universe a statistic compares the matches with)."""
    from technic_v4 import pipeline as pl

    st, alive = pl.universe(ref, as_of)
    stages.append(st)
    st, alive = pl.smart_filter(cfg, ref, alive, notes)
    stages.append(st)
    st, idx, row_of, mcap = pl.max_symbols(cfg, ref, panel, alive, shares)
    stages.append(st)
    st, idx, rows = pl.pre_screen(cfg, panel, idx, row_of, mcap, sess_days, notes)
    stages.append(st)
    st, cols, _ = pl.indicators(panel, rows, LocalBackend(1), stages.tick, notes)
    stages.append(st)
    st, s, sig, reg = pl.scores(cfg, cols, panel, None, notes)
    stages.append(st)
    st, p = pl.plans_stage(cfg, cols, sig)
    stages.append(st)
    if cfg.screen().active:
        st, scr = pl.screen(cfg, panel, pl.screen_ref(ref, idx, shares),
                            pl.builtin_columns(ref, idx, mcap, cols, s, sig, p), rows=rows)
    else:
        st, scr = pl.no_screen(len(idx))
    stages.append(st)
    st, frame = pl.output(cfg, ref, idx, mcap, cols, s, sig, p, scr)
    stages.append(st)
    scored = pd.DataFrame({"Symbol": pd.Series(ref["Symbol"].to_numpy(object)[idx], dtype=object),
                           "Signal": pd.Series(sig, dtype=object),
                           "Close": cols["Close"], **{c: s[c] for c in SCORE_COLUMNS}})
    return frame, reg, scored


# -- from series ----------------------------------------------------------------------------
@dataclass
class _Chunk:
    rows: np.ndarray  # the listings (sids) of the views, one per (listing, epoch) view
    at: np.ndarray  # (n, S) int64: each replayed session's column in ``view`` (-1: none)
    view: Panel


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk of (listing, epoch) views: ``sids[i]`` seen as of ``bases[i]`` (int days)
    for the replayed sessions ``q0[i]:q1[i]``; sorted by basis. What a chunk runner turns into
    a :class:`_Chunk` (from a panel in memory, or on a remote worker from the store)."""

    sids: np.ndarray
    bases: np.ndarray
    q0: np.ndarray
    q1: np.ndarray


@dataclass(frozen=True)
class Plan:
    """What every chunk of one replay shares (picklable: a remote runner ships it once)."""

    days: np.ndarray  # datetime64[D]: the replayed sessions
    width: int  # the stored sessions up to the last one: the width a scan sees
    adjust: str
    as_of: dt.date  # the last replayed session: the panel every view is cut from


class ChunkRunner:
    """Runs a chunk function over chunk specs, yielding results in spec order, with progress
    and cancel per chunk. Local: views cut from the panel in memory, on ``workers`` threads
    (the kernels release the GIL). ``technic_v4.backtest.distributed`` runs them on Ray."""

    name = "local"

    def __init__(self, panel: Panel, workers: int) -> None:
        self.panel, self.workers = panel, workers
        self._row_of = pd.Index(panel.sids)

    def map(self, fn: Callable[[_Chunk, Any], Any], specs: list[ChunkSpec], ctx: Any,
            plan: Plan, tick: _Ticker, step: str) -> Iterator[Any]:
        chunks = (materialize(self.panel, self._row_of.get_indexer(sp.sids), sp, plan)
                  for sp in specs)
        total = sum(len(sp.sids) for sp in specs)
        yield from _threaded(chunks, lambda ch: fn(ch, ctx), self.workers, tick, step, total)

    def stats(self) -> dict[str, Any]:
        return {"runner": self.name, "workers": self.workers}


def _epochs(sids: np.ndarray, actions: adj.Actions | None, mode: str, days: np.ndarray
            ) -> dict[int, list[tuple[int, int, int]]]:
    """Per basis day (int days): the (position in ``sids``, first, end) session ranges whose
    view is the panel as of that basis (no action of the row's mode in between)."""
    dq = days.astype(np.int64)
    last = int(dq[-1])
    acts = actions.of_mode(mode) if actions is not None else adj.Actions.empty()
    inside = (acts.day > dq[0]) & (acts.day <= last)
    out: dict[int, list[tuple[int, int, int]]] = {last: []}
    moved: set[int] = set()
    if inside.any():
        row_of_sid = {int(s): i for i, s in enumerate(sids)}
        by_sid: dict[int, list[int]] = {}
        for sid, day in zip(acts.sid[inside], acts.day[inside], strict=True):
            by_sid.setdefault(int(sid), []).append(int(day))
        for sid, ex in by_sid.items():
            r = row_of_sid.get(sid)
            if r is None:
                continue
            moved.add(r)
            # The epoch of session q: how many of the row's ex-dates are <= it.
            epoch = np.searchsorted(np.unique(ex), dq, side="right")
            bounds = np.flatnonzero(np.diff(epoch)) + 1
            for lo, hi in zip([0, *bounds], [*bounds, len(dq)], strict=True):
                out.setdefault(int(dq[hi - 1]), []).append((r, lo, hi))
    out[last].extend((r, 0, len(dq)) for r in range(len(sids)) if r not in moved)
    return out


def chunk_specs(sids: np.ndarray, actions: adj.Actions | None, mode: str, days: np.ndarray,
                wanted: np.ndarray | None = None, rows: int = 0,
                epochs: dict[int, list[tuple[int, int, int]]] | None = None
                ) -> list[ChunkSpec]:
    """The (listing, epoch) views of every listing of ``sids`` (``wanted``: only those sids),
    ``rows`` views per chunk (default: about ``CHUNK_PAIRS`` pairs). A chunk may hold views of
    several bases (a split's few listings ride along with others). ``epochs``: ``_epochs`` of
    these arguments when the caller has them already."""
    sids = np.asarray(sids)
    want = None if wanted is None else set(np.asarray(wanted).tolist())
    if epochs is None:
        epochs = _epochs(sids, actions, mode, days)
    tasks = [(basis, int(sids[r]), q0, q1)
             for basis, ranges in sorted(epochs.items())
             for r, q0, q1 in ranges if want is None or int(sids[r]) in want]
    # Chunks of about CHUNK_PAIRS (listing, session) pairs: a chunk's columns at its pairs
    # are its memory (~70 float columns), so 20 years take fewer listings per chunk than one.
    size = rows or min(CHUNK_ROWS, max(MIN_CHUNK_ROWS, CHUNK_PAIRS // max(1, len(days))))
    out = []
    for lo in range(0, len(tasks), size):
        part = np.array(tasks[lo:lo + size], dtype=np.int64).reshape(-1, 4)
        out.append(ChunkSpec(sids=part[:, 1], bases=part[:, 0], q0=part[:, 2], q1=part[:, 3]))
    return out


def materialize(panel: Panel, rows: np.ndarray, spec: ChunkSpec, plan: Plan) -> _Chunk:
    """The views of a chunk from ``panel`` (``rows``: the panel row of each of ``spec.sids``,
    the panel as of ``plan.as_of`` with every stored bar), with each replayed session's
    column."""
    dq = plan.days.astype(np.int64)
    width = plan.width + ser.PAD
    own = int(np.datetime64(panel.as_of, "D").astype(np.int64))
    views = []
    acts = None if panel.actions is None else panel.actions.of_mode(panel.adjust)
    for b in np.unique(spec.bases):  # specs are sorted by basis: the stack keeps their order
        pick = rows[spec.bases == b]
        if b == own and panel.close.shape[1] + ser.PAD == width:
            views.append(_padded(panel, pick, ser.PAD))  # what ``at`` gives, without a gather
            continue
        sub = panel.rows(pick)
        if acts is not None:  # only these rows' actions: each view scans fewer
            sub = replace(sub, actions=acts.of_sids(sub.sids))
        views.append(sub.at(np.datetime64(int(b), "D").astype(dt.date), width))
    view = views[0] if len(views) == 1 else _stack(views)
    at = np.full((len(rows), len(dq)), -1, dtype=np.int64)
    _columns_at(view.day, dq, spec.q0, spec.q1, at)
    return _Chunk(spec.sids, at, view)


def _padded(panel: Panel, rows: np.ndarray, pad: int) -> Panel:
    """``panel.rows(rows).at(panel.as_of, width + pad)``, bit for bit: the rows as they are
    with ``pad`` empty bars on the left (no bar is after the panel's own as-of)."""
    n, width = len(rows), panel.close.shape[1]
    out: dict[str, Any] = {}
    for f in adj.FIELDS:
        a = np.empty((n, width + pad))
        a[:, :pad] = np.nan
        np.take(getattr(panel, f), rows, axis=0, out=a[:, pad:])
        out[f] = a
    day = np.empty((n, width + pad), dtype=panel.day.dtype)
    day[:, :pad] = -1
    np.take(panel.day, rows, axis=0, out=day[:, pad:])
    return Panel(symbols=panel.symbols[rows], sids=panel.sids[rows], day=day,
                 as_of=panel.as_of, adjust=panel.adjust, **out)


@njit(cache=True, nogil=True)
def _columns_at(day: Any, dq: Any, q0: Any, q1: Any, out: Any) -> None:
    """``out[i, q]`` = the column of row i's last bar dated <= ``dq[q]`` for q in
    ``q0[i]:q1[i]`` (-1 before its first bar); rows are right-aligned, days ascending."""
    width = day.shape[1]
    for i in range(day.shape[0]):
        j = 0
        while j < width and day[i, j] < 0:
            j += 1
        first = j
        k = first - 1  # the last column <= dq[q] so far
        for q in range(q0[i], q1[i]):
            while k + 1 < width and day[i, k + 1] <= dq[q]:
                k += 1
            out[i, q] = k if k >= first else -1


def _stack(views: list[Panel]) -> Panel:
    """Views of different bases as one panel of their rows (bars only: no raw rows)."""
    def cat(f: str) -> np.ndarray:
        return np.concatenate([getattr(v, f) for v in views])

    return Panel(symbols=cat("symbols"), sids=cat("sids"), open=cat("open"), high=cat("high"),
                 low=cat("low"), close=cat("close"), volume=cat("volume"), day=cat("day"),
                 as_of=views[-1].as_of, adjust=views[-1].adjust)


def _fields(view: Panel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                  np.ndarray]:
    return view.open, view.high, view.low, view.close, view.volume, view.day


PRE_COLUMNS = ("Close", "DollarVolume20", "RSScore", "Bars", "LastDay")


@dataclass(frozen=True)
class PreContext:
    width: int
    ref_sids: pd.Index  # the reference's sids: a chunk's listings' positions


def pre_chunk(ch: _Chunk, ctx: PreContext) -> dict[str, np.ndarray]:
    """Pass A of one chunk: the pre-screen's inputs at every pair of it: ``pos`` (reference
    row), ``q`` (session) and :data:`PRE_COLUMNS`."""
    r, q = np.nonzero(ch.at >= 0)
    cols = ser.at_pairs(*_fields(ch.view), r, ch.at[r, q], ctx.width, indicators=False)
    pos = np.asarray(ctx.ref_sids.get_indexer(pd.Index(ch.rows)), dtype=np.int64)[r]
    ok = pos >= 0
    return {"pos": pos[ok], "q": q[ok], **{c: cols[c][ok] for c in PRE_COLUMNS}}


@dataclass(frozen=True)
class ScoreContext:
    """Pass B's shared inputs: the (S, N) survivors, RSRating and market caps by reference
    row, the regime factor per session, the screen's texts and the reference (text as
    Python strings)."""

    cfg: ScanConfig
    width: int
    ref: pd.DataFrame
    ref_sids: pd.Index
    keep: np.ndarray
    rs_rating: np.ndarray
    mcap: np.ndarray
    factor: np.ndarray
    regime: sc.Regime
    texts: list[str]
    trade_codes: np.ndarray
    # The screen's ``market_cap`` reads the shares as of each session (``pipeline.screen_ref``):
    # the replayed sessions (int days), the splits and the last stored session (int day).
    days: np.ndarray
    splits: adj.Actions
    through: int


def score_chunk(ch: _Chunk, ctx: ScoreContext) -> dict[str, Any] | None:
    """Pass B of one chunk: every column at its surviving pairs, scores, signals, plans, the
    screen and stage 10's filters; the scored universe's columns and the kept rows."""
    from technic_v4 import pipeline as pl

    cfg = ctx.cfg
    p_ref = np.asarray(ctx.ref_sids.get_indexer(pd.Index(ch.rows)), dtype=np.int64)
    at = np.where((p_ref[:, None] >= 0) & ctx.keep[:, np.maximum(p_ref, 0)].T, ch.at, -1)
    r, q = np.nonzero(at >= 0)
    if len(r) == 0:
        return None
    cols = ser.at_pairs(*_fields(ch.view), r, at[r, q], ctx.width)
    ser.derived(cols)
    cols["LastDay"] = cols["LastDay"].astype(np.int64)
    pos = p_ref[r]
    s = sc.score(cols, ctx.regime, rs_rating=ctx.rs_rating[q, pos], factor=ctx.factor[q])
    code = sc.signal_codes(cols, s, cfg.allow_shorts)
    sig = sc.SIGNAL_NAMES[code]
    pl_ = plans(cols, code, account_size=float(cfg.account_size),
                risk_pct=float(cfg.risk_pct), target_rr=float(cfg.target_rr),
                min_stop_atr=float(cfg.min_stop_atr), max_stop_atr=float(cfg.max_stop_atr),
                max_adv_pct=float(cfg.max_adv_pct))
    m = ctx.mcap[q, pos]
    drops: dict[str, int] = {}
    scr = _screen(cfg, ch, at, r, q, ctx.ref, pos, m, cols, s, sig, pl_, ctx.texts, drops,
                  ctx)
    tradeable = np.isin(code, ctx.trade_codes) \
        & np.isfinite(pl_["Entry"]) & (np.nan_to_num(pl_["PositionSize"]) >= 1)
    out = pl._drop(pl.Stage("output", 0, 0), scr.keep, [
        (f"TechRating < {cfg.min_tech_rating:g}", s["TechRating"] < cfg.min_tech_rating),
        ("not tradeable (signal or size)", ~tradeable if cfg.only_tradeable
         else np.zeros(len(r), dtype=bool))])
    sel = np.flatnonzero(out)
    res: dict[str, Any] = {
        "dropped": drops,
        "uni": {"q": q.astype(np.int32), "pos": pos.astype(np.int32), "Signal": code,
                # A copy: cols["Close"] is a row of the chunk's window array, which a view
                # kept here would keep whole (18 columns: ~2 GB over 20 years).
                "Close": cols["Close"].copy(), **{c: s[c] for c in SCORE_COLUMNS}}}
    if len(sel):
        res["kept"] = {"q": q[sel], "pos": pos[sel], "mcap": m[sel],
                       "cols": {c: v[sel] for c, v in cols.items()},
                       "s": {c: v[sel] for c, v in s.items()}, "sig": code[sel],
                       "p": {c: v[sel] for c, v in pl_.items()},
                       "matched": scr.matched[sel],
                       "failed": None if scr.failed is None else scr.failed[sel],
                       "user": {c: v[sel] for c, v in scr.columns.items()},
                       "key": None if scr.sort_key is None else scr.sort_key[sel]}
    return res


def _series(cfg: ScanConfig, data: MarketData, ref: pd.DataFrame, panel: Panel,
            days: np.ndarray, tick: _Ticker, runner: ChunkRunner | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from technic_v4 import pipeline as pl

    timing: dict[str, float] = {}
    # Text columns as Python strings once (each chunk reads them at its pairs).
    text_ref = ref  # the frame reads text from pandas' str arrays (no round trip)
    ref = ref.astype({c: object for c in ref.columns if isinstance(ref[c].dtype, pd.StringDtype)})
    n_ref, n_s = len(ref), len(days)
    workers = data.settings.max_workers
    runner = runner or ChunkRunner(panel, workers)
    plan = Plan(days=days, width=int(panel.close.shape[1]), adjust=panel.adjust,
                as_of=days[-1].astype(dt.date))
    ref_sids = pd.Index(ref["sid"].to_numpy())
    sids = np.asarray(panel.sids)

    # Pass A: the pre-screen's inputs at every session, (S, N) by reference row.
    t = time.perf_counter()
    pre = {c: np.full((n_s, n_ref), np.nan) for c in ("Close", "DollarVolume20", "RSScore")}
    pre["Bars"] = np.zeros((n_s, n_ref), dtype=np.int32)
    pre["LastDay"] = np.full((n_s, n_ref), -1, dtype=np.int32)
    # Listings the smart filter drops (types, exchanges, …) are never scored: no pass A.
    _, smart = pl.smart_filter(cfg, ref, np.ones(n_ref, dtype=bool), [])
    epochs = _epochs(sids, panel.actions, panel.adjust, days)  # both passes' views
    specs = chunk_specs(sids, panel.actions, panel.adjust, days,
                        wanted=ref["sid"].to_numpy()[smart], epochs=epochs)
    for got in runner.map(pre_chunk, specs, PreContext(plan.width, ref_sids), plan, tick,
                          "pre-screen"):
        for c, a in pre.items():
            a[got["q"], got["pos"]] = got[c]
    timing["pass_a"] = time.perf_counter() - t
    heap.trim()  # the chunks' columns are freed: give their pages back

    # Cross-sectional steps, vectorised over (S, N).
    t = time.perf_counter()
    keep, mcap = _survivors(cfg, data, ref, pre, days)
    rs_rating = _rs_rating(np.where(keep, pre["RSScore"], np.nan), workers)
    del pre
    regs = _regimes(panel, days)
    factor = np.array([r.factor for r in regs])
    timing["cross_section"] = time.perf_counter() - t

    # Pass B: everything else at the survivors' pairs, chunk by chunk.
    t = time.perf_counter()
    spec = cfg.screen()
    texts = [clause_text(c.text) for c in spec.where.clauses] if spec.where is not None else []
    kept: list[dict[str, Any]] = []
    uni: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    alive = ref["sid"].to_numpy()[keep.any(axis=0)]
    trade_codes = np.array([sc.SIGNALS.index(x) for x in (
        "Strong Long", "Long", *(SHORT_SIGNALS if cfg.allow_shorts else ()))], dtype=np.int8)
    last = data.store.last_session()
    ctx = ScoreContext(cfg, plan.width, ref, ref_sids, keep, rs_rating, mcap, factor, regs[0],
                       texts, trade_codes, days.astype(np.int64),
                       data.actions().of_mode("split"),
                       int(np.datetime64(last, "D").astype(np.int64)) if last else -1)
    specs = chunk_specs(sids, panel.actions, panel.adjust, days, wanted=alive, epochs=epochs)
    for got in runner.map(score_chunk, specs, ctx, plan, tick, "indicators"):
        if got is None:
            continue
        for k, v in got["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
        uni.append(got["uni"])
        if "kept" in got:
            kept.append(got["kept"])
    timing["pass_b"] = time.perf_counter() - t
    n_pairs = int(keep.sum())
    # Free the (S, N) arrays the output does not read.
    del ctx
    keep = mcap = rs_rating = np.empty((0, 0))
    heap.trim()

    t = time.perf_counter()
    tick("output", 0, 1)
    matches, m_pos = _assemble(cfg, text_ref, days, kept, workers)
    matches = text_as_str(matches)
    universe, u_pos = _universe(ref, days, uni)
    heap.trim()
    timing["output"] = time.perf_counter() - t
    regime = pd.DataFrame([{"AsOf": pd.Timestamp(d.astype(dt.date)), **r.as_dict()}
                           for d, r in zip(days, regs, strict=True)])
    stats = {"seconds_by_step": {k: round(v, 6) for k, v in timing.items()},
             "pairs": n_pairs, "dropped": dropped, "runner": runner.stats(),
             "epoch_groups": len(epochs),
             "match_listing": m_pos, "universe_listing": u_pos}
    return matches, universe, regime, stats


def _threaded(chunks: Iterator[_Chunk], fn: Callable[[_Chunk], Any], workers: int,
              tick: _Ticker, step: str, total: int) -> Iterator[Any]:
    """``fn`` over the chunks on ``workers`` threads (the kernels release the GIL), results in
    chunk order, at most ``workers + 1`` chunks in memory; progress and cancel per chunk."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    done = 0
    if workers == 1:  # in this thread (what a profile sees)
        for ch in chunks:
            got = fn(ch)
            done += len(ch.rows)
            yield got
            tick(step, done, total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="technic-replay") as ex:
        pending: deque[tuple[int, Future[Any]]] = deque()
        for ch in chunks:
            pending.append((len(ch.rows), ex.submit(fn, ch)))
            while len(pending) > workers:
                n, fut = pending.popleft()
                done += n
                yield fut.result()
                tick(step, done, total)
        while pending:
            n, fut = pending.popleft()
            done += n
            yield fut.result()
            tick(step, done, total)


def _survivors(cfg: ScanConfig, data: MarketData, ref: pd.DataFrame, pre: dict[str, np.ndarray],
               days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) bool: the listings each session's scan scores (stages 2-5), and market caps."""
    from technic_v4 import pipeline as pl

    dq = days.astype("datetime64[D]")
    list_date = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
    alive = ~(list_date[None, :] > dq[:, None])  # an unknown ListDate (NaT) is listed (stage 2)
    if "Delisted" in ref:
        gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]")
        alive &= ~(~np.isnat(gone)[None, :] & (gone[None, :] < dq[:, None]))
    _, smart = pl.smart_filter(cfg, ref, np.ones(len(ref), dtype=bool), [])
    alive &= smart[None, :]
    mcap = shares_by_session(data, ref, days) * pre["Close"]
    if cfg.max_symbols is not None:
        sym = ref["Symbol"].to_numpy().astype(str)
        for q in range(len(days)):
            idx = np.flatnonzero(alive[q])
            order = np.lexsort((sym[idx], -np.nan_to_num(mcap[q, idx], nan=-1.0)))
            alive[q] = False
            alive[q, idx[order[:cfg.max_symbols]]] = True
    sess = data.sessions(days[-1].astype(dt.date)).astype(np.int64)
    n_sess = np.searchsorted(sess, days.astype(np.int64), side="right")
    last = pre["LastDay"]
    stale = n_sess[:, None] - 1 - (np.searchsorted(sess, last, side="right") - 1)
    nb = pre["Bars"]
    with np.errstate(invalid="ignore"):
        keep = alive & (nb > 0) & ~(stale > cfg.max_stale_sessions) \
            & ~(nb < cfg.min_history) & (pre["Close"] >= cfg.min_price) \
            & (pre["DollarVolume20"] >= cfg.min_dollar_volume) & ~(mcap < cfg.min_market_cap)
    return keep, mcap


def shares_by_session(data: MarketData, ref: pd.DataFrame, days: np.ndarray) -> np.ndarray:
    """(S, N): ``data.shares_as_of(D)`` (the reference's column where None) at every D of
    ``days``, bit for bit, in one backward sweep: the split product as of D multiplies the
    ratios of the splits after D from the latest down (``adjust.split_product``'s order), so
    stepping D back multiplies one more ratio onto the product of the later D."""
    base = ref["SharesOutstanding"].to_numpy(np.float64)
    out = np.empty((len(days), len(ref)))
    last = data.store.last_session()
    acts = data.actions().of_mode("split")
    through = int(np.datetime64(last, "D").astype(np.int64)) if last is not None else -1
    k = np.flatnonzero(acts.day <= through)[::-1]  # split_product's visiting order
    k = k[np.argsort(-acts.day[k].astype(np.int64), kind="stable")]  # latest ex-date first
    row = pd.Index(ref["sid"].to_numpy(np.int32)).get_indexer(acts.sid[k])
    prod = np.ones(len(ref))
    changed = False
    dq = days.astype(np.int64)
    j = 0
    for q in range(len(days) - 1, -1, -1):
        while j < len(k) and acts.day[k[j]] > dq[q]:
            if row[j] >= 0:
                prod[row[j]] *= acts.value[k[j]]
                changed = True
            j += 1
        out[q] = base / prod if changed else base
    return out


def _rs_rating(x: np.ndarray, workers: int = 1) -> np.ndarray:
    """``percentile_rating`` of each session's row of ``x`` (NaN: not rated), at once."""
    ranks = average_ranks(x, workers)
    n = np.isfinite(x).sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = (ranks - 0.5) / n
    return np.clip(np.round(1 + 98 * pct), 1, 99)


def average_ranks(x: np.ndarray, workers: int = 1) -> np.ndarray:
    """Per row of ``x``, pandas' ``rank(axis=1, method="average")`` (NaN stays NaN), bit for
    bit, in a compiled kernel (pandas took ~3 s on a 20-year (S, N) array)."""
    from concurrent.futures import ThreadPoolExecutor

    from technic_v4.execution import spans

    out = np.full(x.shape, np.nan)
    x = np.ascontiguousarray(x, dtype=np.float64)
    parts = spans(len(x), workers)
    with ThreadPoolExecutor(max_workers=len(parts) or 1) as ex:  # the kernel releases the GIL
        list(ex.map(lambda p: _rank_rows(x[p[0]:p[1]], out[p[0]:p[1]]), parts))
    return out


@njit(cache=True, nogil=True)
def _rank_rows(x: Any, out: Any) -> None:
    for q in range(x.shape[0]):
        row = x[q]
        idx = np.flatnonzero(~np.isnan(row))
        _walk_ties(idx[np.argsort(row[idx], kind="mergesort")], row, out[q])


def _regimes(panel: Panel, days: np.ndarray) -> list[sc.Regime]:
    """The regime at each session from SPY's closes as of it (the scan's view of SPY)."""
    from technic_v4.pipeline import BENCHMARK

    spy = np.flatnonzero(panel.symbols == BENCHMARK)
    if not len(spy):
        return [sc.regime(np.empty(0))] * len(days)
    row = panel.rows(spy[:1])
    # The regime reads the last 61 closes and whether there are 201: this tail decides it.
    tail = min(panel.close.shape[1], 2 * sc.REGIME_MIN_BARS)
    acts = panel.actions.of_mode(panel.adjust) if panel.actions is not None \
        else adj.Actions.empty()
    dq = days.astype(np.int64)
    if ((acts.sid == row.sids[0]) & (acts.day > dq[0]) & (acts.day <= dq[-1])).any():
        return [sc.regime(row.at(d.astype(dt.date), tail).close[0]) for d in days]
    # No SPY action inside the range: its bars as of the last session are those as of each D.
    ok = row.day[0] >= 0
    day, close = row.day[0][ok], row.close[0][ok]
    ends = np.searchsorted(day, dq, side="right")
    return [sc.regime(close[max(0, k - tail):k]) for k in ends]


def _series_roots(term: Term) -> list[Term]:
    """The largest sub-terms of ``term`` that have a value on every bar (no scan column, no
    cross-sectional function, daily): computed over history and read at the pairs."""
    out: list[Term] = []
    bad: dict[int, bool] = {}
    for t in term.walk():  # children first
        bad[id(t)] = t.latest or t.op == "column" or t.timeframe != DAILY or (
            t.op == "call" and t.name in ("rank", "zscore")) or any(bad[id(a)] for a in t.args)

    def visit(t: Term) -> None:
        if t.op == "const":
            return
        if not bad[id(t)]:
            out.append(t)
            return
        for a in t.args:
            visit(a)

    visit(term)
    return out


def _screen(cfg: ScanConfig, ch: _Chunk, at: np.ndarray, r: np.ndarray, q: np.ndarray,
            ref: pd.DataFrame, pos: np.ndarray, mcap: np.ndarray, cols: dict[str, np.ndarray],
            s: dict[str, np.ndarray], sig: np.ndarray, p: dict[str, np.ndarray],
            texts: list[str], dropped: dict[str, int], ctx: ScoreContext) -> Any:
    """Stage 9 at the pairs ``(r, q)`` of a chunk: series sub-terms over the chunk's history,
    read at the pairs, then the rest over the pairs (as ``pipeline.screen`` would at each D)."""
    from technic_v4 import pipeline as pl
    from technic_v4.terms.engine import Evaluator, clause_mask
    from technic_v4.terms.kernels import Bars

    spec = cfg.screen()
    n = len(r)
    if not spec.active:
        return pl.no_screen(n)[1]
    roots = [*(() if spec.where is None else (c.term for c in spec.where.clauses)),
             *(c.term for _, c in spec.columns),
             *(() if spec.sort is None else (spec.sort.term,))]
    history = Evaluator(Bars.of(ch.view), _view_ref(ch, ref, ctx), reuse_builtins=False)
    seeds: dict[str, np.ndarray] = {}
    for root in roots:
        for t in _series_roots(root):
            if t.key not in seeds:
                v = history.series(t)
                seeds[t.key] = np.ascontiguousarray(v[r, at[r, q]]).reshape(n, 1)
    ones = np.zeros((n, 1))
    pairs = Bars(ones + np.nan, ones + np.nan, ones + np.nan, ones + np.nan, ones + np.nan,
                 np.zeros((n, 1), dtype=np.int32))
    builtin = pl.builtin_columns(ref, pos, np.zeros(len(ref)), cols, s, sig, p)
    builtin["MarketCap"] = mcap
    ev = Evaluator(pairs, ref.iloc[pos].reset_index(drop=True), builtin)
    # The pairs' values of the series sub-terms, as the scan's Evaluator would compute them
    # at each pair's session: seeded into its cache (one key, one value).
    ev._cache.update(seeds)
    ev.plan(roots)
    keep = np.ones(n, dtype=bool)
    matched = np.full(n, "", dtype=object)
    failed = None
    if spec.where is not None:
        held = np.asarray(clause_mask(spec.where, ev), dtype=bool).reshape(n, len(texts))
        keep = (~held).sum(axis=1) <= cfg.near_miss
        first = np.argmin(held, axis=1)
        for j, text in enumerate(texts):
            k = int((~keep & (first == j)).sum())
            if k:
                dropped[f"where: {text}"] = dropped.get(f"where: {text}", 0) + k
        # The texts only where a row can be output (the rest never is).
        matched = _joined(held, texts, keep)
        if cfg.near_miss:
            failed = _joined(~held, texts, keep)
    user = {name: ev.latest(col.term) for name, col in spec.columns}
    sort_key = None
    if spec.sort is not None:
        sort_key = np.asarray(ev.latest(spec.sort.term), dtype=np.float64)
    elif spec.sort_column is not None:
        sort_key = np.asarray(user[spec.sort_column], dtype=np.float64)
    return pl.Screened(keep, matched, failed, user, sort_key)


def _view_ref(ch: _Chunk, ref: pd.DataFrame, ctx: ScoreContext) -> pd.DataFrame:
    """The reference rows of a chunk's views with SharesOutstanding as of each view's
    sessions (``MarketData.shares_as_of``, bit for bit): what the scan's screen reads at them
    (``pipeline.screen_ref``). A view's sessions lie between two of its split ex-dates (its
    epoch), so any one of them gives its shares."""
    sub = ref.iloc[ref_rows(ch, ref)].reset_index(drop=True)
    acts = ctx.splits.of_sids(ch.view.sids)
    if not len(acts.sid):
        return sub
    shares = sub["SharesOutstanding"].to_numpy(np.float64).copy()
    for i in np.flatnonzero((ch.at >= 0).any(axis=1) & np.isin(ch.view.sids, acts.sid)):
        q = int(np.argmax(ch.at[i] >= 0))
        prod = adj.split_product(ch.view.sids[i:i + 1], acts, int(ctx.days[q]), ctx.through)
        shares[i] = shares[i] / prod[0]
    sub["SharesOutstanding"] = shares
    return sub


def _joined(mask: np.ndarray, texts: list[str], rows: np.ndarray) -> np.ndarray:
    """``pipeline._joined`` (the texts whose column holds, "; "-joined) at ``rows`` (bool),
    deferred: up to 62 clauses, each row's pattern as one int64 bitmask (bit j: clause j
    holds; 0 elsewhere), spelled once per distinct pattern at the output
    (:func:`_patterns_text`); beyond, the strings themselves ("" elsewhere)."""
    from technic_v4 import pipeline as pl

    at = np.flatnonzero(rows)
    if mask.shape[1] > 62:
        out = np.full(len(mask), "", dtype=object)
        out[at] = pl._joined(mask[at], texts)
        return out
    code = np.zeros(len(mask), dtype=np.int64)
    code[at] = mask[at].astype(np.int64) @ (np.int64(1) << np.arange(mask.shape[1],
                                                                     dtype=np.int64))
    return code


def _patterns_text(values: np.ndarray, texts: list[str]) -> Any:
    """The Matched/Failed column (pandas ``str``) of :func:`_joined`'s values: bitmasks
    spelled once per distinct pattern and taken per row by Arrow, or strings as they are."""
    if values.dtype != np.int64:
        return _str(values)
    uniq, inv = np.unique(values, return_inverse=True)
    words = ["; ".join(t for j, t in enumerate(texts) if (int(u) >> j) & 1) for u in uniq]
    return pd.array(sc.texts_of(words, np.asarray(inv).reshape(-1)), dtype=STR)


def ref_rows(ch: _Chunk, ref: pd.DataFrame) -> np.ndarray:
    """The reference positions of a chunk's rows (every panel row is a reference listing)."""
    return np.asarray(pd.Index(ref["sid"].to_numpy()).get_indexer(ch.view.sids), np.int64)


@njit(cache=True, nogil=True)
def _move(out: Any, dest: Any, v: Any, i: Any) -> None:
    """``out[dest] = v[i]`` in one pass (no gathered temporary)."""
    for k in range(len(i)):
        out[dest[k]] = v[i[k]]


def _assemble(cfg: ScanConfig, ref: pd.DataFrame, days: np.ndarray,
              kept: list[dict[str, Any]], workers: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Stage 10 over every kept pair: per session, sort, top_n, Rank; the scan's columns (and
    each row's reference position)."""
    from concurrent.futures import ThreadPoolExecutor

    from technic_v4 import pipeline as pl

    if not kept:
        frame = pl.empty_frame(cfg)
        frame.insert(0, "AsOf", pd.Series(dtype="datetime64[s]"))
        return frame, np.zeros(0, dtype=np.int64)

    def keys(name: str) -> np.ndarray:
        return np.concatenate([x[name] if x[name] is not None else x["s"]["TechRating"]
                               for x in kept])

    q, pos, mcap, key = keys("q"), keys("pos"), keys("mcap"), keys("key")
    # The scan's order: key descending, then Symbol, then (equal symbols) market cap.
    _, code = symbol_codes(ref)
    order = np.lexsort((-np.nan_to_num(mcap, nan=-1.0), code[pos], -key, q))
    qs = q[order]
    starts = np.flatnonzero(np.r_[True, qs[1:] != qs[:-1]])
    rank = np.arange(len(qs)) - np.repeat(starts, np.diff(np.r_[starts, len(qs)])) + 1
    if cfg.top_n is not None:
        order, rank = order[rank <= cfg.top_n], rank[rank <= cfg.top_n]
    # Each kept row's place in the output (-1: beyond top_n): every column is gathered
    # straight into its final order, part by part, and each part's column freed once read.
    place = np.full(len(q), -1, dtype=np.int64)
    place[order] = np.arange(len(order))
    bounds = np.cumsum([0, *(len(x["q"]) for x in kept)])
    moves = []
    for lo, hi in itertools.pairwise(bounds.tolist()):
        i = np.flatnonzero(place[lo:hi] >= 0)
        moves.append((i, place[lo:hi][i]))
    n = len(order)

    def gather(group: str | None, name: str) -> np.ndarray | None:
        out: np.ndarray | None = None
        for x, (i, dest) in zip(kept, moves, strict=True):
            holder = x if group is None else x[group]
            v = holder.pop(name)
            if v is None:
                return None
            if out is None:
                out = np.empty(n, dtype=v.dtype)
            if v.dtype.kind in "fiub":
                _move(out, dest, v, i)
            else:
                out[dest] = v[i]
        return out

    def gathered(group: str) -> dict[str, np.ndarray]:
        names = list(kept[0][group])
        with ThreadPoolExecutor(max_workers=workers) as ex:  # the kernel releases the GIL
            got = list(ex.map(lambda k: gather(group, k), names))
        return dict(zip(names, got, strict=True))

    cols, s, p, user = gathered("cols"), gathered("s"), gathered("p"), gathered("user")
    sig, matched, failed = gather(None, "sig"), gather(None, "matched"), gather(None, "failed")
    kept.clear()
    heap.trim()  # the parts' small arrays
    pos, mcap, q = pos[order], mcap[order], q[order]
    assert sig is not None and matched is not None
    # Text as Arrow strings straight away (signals from their codes): pandas converting
    # millions of Python strings cost seconds.
    sig = pd.array(sc.texts_of(sc.SIGNALS, sig), dtype=STR)
    spec = cfg.screen()
    texts = [clause_text(c.text) for c in spec.where.clauses] if spec.where is not None else []
    extra = {"MarketCap": mcap, "Rank": rank.astype(np.int64),
             "Matched": _patterns_text(matched, texts),
             **({} if failed is None else {"Failed": _patterns_text(failed, texts)}), **user}
    frame = pl._frame(ref, pos, None, np.zeros(len(ref)), cols, s, sig, p, extra)
    del cols, s, p, extra  # the frame holds its own copy
    frame.insert(0, "AsOf", pd.DatetimeIndex(days[q].astype("datetime64[s]")))
    return frame, pos.astype(np.int64)


STR = pd.StringDtype(na_value=np.nan)  # pandas' ``str`` dtype, what a scan's text columns have


def _str(values: np.ndarray) -> Any:
    """An object array of Python strings as a pandas ``str`` array."""
    import pyarrow as pa

    return pd.array(pa.array(values, type=pa.string()), dtype=STR)


def text_as_str(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas' ``str`` dtype (a scan's frame has it, but a concat with a
    session without rows gives ``object``: a replay's frame has one dtype whatever the
    sessions)."""
    for c in frame.columns:
        if frame[c].dtype == object and pd.api.types.infer_dtype(
                frame[c], skipna=True) in ("string", "empty"):
            frame[c] = frame[c].astype(pd.StringDtype(na_value=np.nan))
    return frame


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda x: x[key]


def _universe(ref: pd.DataFrame, days: np.ndarray, parts: list[dict[str, Any]]
              ) -> tuple[pd.DataFrame, np.ndarray]:
    if not parts:
        names, _ = symbol_codes(ref)
        return pd.DataFrame({"AsOf": pd.Series(dtype="datetime64[s]"),
                             "Symbol": pd.Categorical([], categories=names),
                             "Signal": pd.Categorical([], categories=sc.SIGNALS),
                             **{c: pd.Series(dtype="float64") for c in ("Close",
                                                                         *SCORE_COLUMNS)}}
                            ), np.zeros(0, dtype=np.int64)
    cat = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]}
    names, code = symbol_codes(ref)
    order = session_symbol_order(cat["q"], code[cat["pos"]])
    sig = pd.Categorical.from_codes(cat["Signal"][order], categories=pd.Index(sc.SIGNALS))
    from technic_v4.pipeline import _frame_as_is

    columns = {"AsOf": days[cat["q"][order]].astype("datetime64[s]"),
               "Symbol": pd.Categorical.from_codes(code[cat["pos"]][order],
                                                   categories=pd.Index(names)),
               "Signal": sig, **{c: cat[c][order] for c in ("Close", *SCORE_COLUMNS)}}
    return _frame_as_is(columns, list(columns)), cat["pos"][order].astype(np.int64)


def session_symbol_order(q: np.ndarray, code: np.ndarray) -> np.ndarray:
    """The stable order by session ``q``, then symbol ``code``: two stable passes (symbol,
    then session), each a radix sort when its keys fit 16 bits (NumPy's stable sort of small
    integers), else one stable sort of a combined key."""
    q = np.asarray(q, dtype=np.int64)
    code = np.asarray(code, dtype=np.int64)
    small = np.iinfo(np.int16).max
    if (len(q) == 0 or q.max() <= small) and (len(code) == 0 or code.max() <= small):
        first = np.argsort(code.astype(np.int16), kind="stable")
        return first[np.argsort(q[first].astype(np.int16), kind="stable")]
    return np.argsort(q * (int(code.max(initial=0)) + 1) + code, kind="stable")


def listing_of(ref: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
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
                ok = rows & (out < 0) & ~(listed[i] > day) & (np.isnat(gone[i]) | (gone[i] >= day))
                out[ok] = i
    return out


def symbol_codes(ref: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct symbols and each reference row's position among them (equal
    symbols, e.g. a reused ticker, share a code: ties keep their order, as a string sort)."""
    names, code = np.unique(ref["Symbol"].to_numpy(object).astype(str), return_inverse=True)
    return names, np.asarray(code, dtype=np.int64).reshape(-1)


def _message(res: ReplayResult) -> str:
    st = res.stats
    n = len(res.sessions)
    span = f"{res.sessions[0].date()}..{res.sessions[-1].date()}"
    hit = int(res.matches["AsOf"].nunique()) if len(res.matches) else 0
    msg = (f"Replayed {n:,} session(s) {span} ({st['method']}) over {st['listings']:,} listings "
           f"in {st['seconds']:.2f}s: {len(res.matches):,} rows on {hit:,} session(s)")
    if len(res.matches) == 0:
        why = sorted(((v, k) for k, v in st.get("dropped", {}).items()), reverse=True)[:2]
        msg += (f"; the screen never matched: {len(res.universe):,} listing-sessions were "
                "scored" + (", most dropped by " + "; ".join(f"{k}: {v:,}" for v, k in why)
                            if why else ""))
    return msg + "."


__all__ = ["ReplayResult", "replay", "replay_config", "sessions_between"]
