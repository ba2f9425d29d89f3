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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.backtest import series as ser
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
CHUNK_ROWS = 256  # listings per chunk: (rows x sessions) column arrays stay ~100 MB
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
        t = time.perf_counter()
        panel = data.panel(days[-1].astype(dt.date), cfg.bars_needed)
        load_seconds = time.perf_counter() - t
        run = _series if chosen == "series" else _per_session
        matches, universe, regime, stats = run(cfg, data, ref, panel, days, ticker)
        m_pos, u_pos = stats.pop("match_listing"), stats.pop("universe_listing")
    stats.update(method=chosen, per_session_reason=why or None, sessions=len(days),
                 listings=len(ref), bars=int(panel.close.shape[1]),
                 load_seconds=round(load_seconds, 6),
                 seconds=round(time.perf_counter() - t0, 6))
    idx = pd.DatetimeIndex(days.astype("datetime64[ns]"), name="AsOf")
    res = ReplayResult(cfg, idx, matches, universe, regime, m_pos, u_pos, stats)
    res.message = _message(res)
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
        st, scr = pl.screen(cfg, panel, ref.iloc[idx].reset_index(drop=True),
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
    rows: np.ndarray  # panel rows
    at: np.ndarray  # (n, S) int64: each replayed session's column in ``view`` (-1: none)
    view: Panel


def _epochs(panel: Panel, days: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """Per basis day (int days): the (panel row, first, end) session ranges whose view is the
    panel as of that basis (no action of the row's mode in between)."""
    dq = days.astype(np.int64)
    last = int(dq[-1])
    acts = panel.actions.of_mode(panel.adjust) if panel.actions is not None \
        else adj.Actions.empty()
    inside = (acts.day > dq[0]) & (acts.day <= last)
    out: dict[int, list[tuple[int, int, int]]] = {last: []}
    moved: set[int] = set()
    if inside.any():
        row_of_sid = {int(s): i for i, s in enumerate(panel.sids)}
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
    out[last].extend((r, 0, len(dq)) for r in range(len(panel.sids)) if r not in moved)
    return out


def _chunks(panel: Panel, days: np.ndarray, rows_wanted: np.ndarray | None = None
            ) -> Iterator[_Chunk]:
    """The epoch views of every panel row (``rows_wanted``: only those), ``CHUNK_ROWS`` (row,
    epoch) views at a time, each with the column of every replayed session of its epoch. A
    chunk may stack views of several bases (a split's few listings ride along with others)."""
    dq = days.astype(np.int64)
    width = panel.close.shape[1] + ser.PAD
    want = None if rows_wanted is None else set(rows_wanted.tolist())
    tasks = [(basis, r, q0, q1) for basis, ranges in sorted(_epochs(panel, days).items())
             for r, q0, q1 in ranges if want is None or r in want]
    for lo in range(0, len(tasks), CHUNK_ROWS):
        part = tasks[lo:lo + CHUNK_ROWS]
        rows = np.array([x[1] for x in part], dtype=np.int64)
        bases = np.array([x[0] for x in part], dtype=np.int64)
        views = []
        for b in np.unique(bases):  # tasks are sorted by basis: the stack keeps their order
            views.append(panel.rows(rows[bases == b]).at(
                np.datetime64(int(b), "D").astype(dt.date), width))
        view = views[0] if len(views) == 1 else _stack(views)
        at = np.full((len(rows), len(dq)), -1, dtype=np.int64)
        for i, (_, _, q0, q1) in enumerate(part):
            d = view.day[i]
            first = int(np.searchsorted(d >= 0, True))  # rows are right-aligned
            k = np.searchsorted(d[first:], dq[q0:q1], side="right")
            at[i, q0:q1] = np.where(k > 0, first + k - 1, -1)
        yield _Chunk(rows, at, view)


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


def _series(cfg: ScanConfig, data: MarketData, ref: pd.DataFrame, panel: Panel,
            days: np.ndarray, tick: _Ticker
            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from technic_v4 import pipeline as pl

    timing: dict[str, float] = {}
    # Text columns as Python strings once (each chunk reads them at its pairs).
    text_ref = ref  # the frame reads text from pandas' str arrays (no round trip)
    ref = ref.astype({c: object for c in ref.columns if isinstance(ref[c].dtype, pd.StringDtype)})
    n_ref, n_s = len(ref), len(days)
    width = panel.close.shape[1]
    row_of = pd.Index(panel.sids).get_indexer(ref["sid"].to_numpy())
    ref_of_row = np.full(len(panel.sids), -1, dtype=np.int64)
    ref_of_row[row_of[row_of >= 0]] = np.flatnonzero(row_of >= 0)

    workers = data.settings.max_workers

    # Pass A: the pre-screen's inputs at every session, (S, N) by reference row.
    t = time.perf_counter()
    pre = {c: np.full((n_s, n_ref), np.nan) for c in ("Close", "DollarVolume20", "RSScore")}
    pre["Bars"] = np.zeros((n_s, n_ref), dtype=np.int32)
    pre["LastDay"] = np.full((n_s, n_ref), -1, dtype=np.int32)

    def window_columns(ch: _Chunk) -> tuple[_Chunk, np.ndarray, np.ndarray, dict[str, Any]]:
        r, q = np.nonzero(ch.at >= 0)
        return ch, r, q, ser.at_pairs(*_fields(ch.view), r, ch.at[r, q], width,
                                      indicators=False)

    for ch, r, q, cols in _threaded(_chunks(panel, days), window_columns, workers, tick,
                                    "pre-screen", len(panel.sids)):
        p = ref_of_row[ch.rows[r]]
        ok = p >= 0
        for c, a in pre.items():
            a[q[ok], p[ok]] = cols[c][ok]
    timing["pass_a"] = time.perf_counter() - t

    # Cross-sectional steps, vectorised over (S, N).
    t = time.perf_counter()
    keep, mcap = _survivors(cfg, data, ref, pre, days)
    rs_rating = _rs_rating(np.where(keep, pre["RSScore"], np.nan))
    del pre
    regs = _regimes(panel, days)
    factor = np.array([r.factor for r in regs])
    timing["cross_section"] = time.perf_counter() - t

    # Pass B: everything else at the survivors' pairs, chunk by chunk on ``workers`` threads.
    t = time.perf_counter()
    spec = cfg.screen()
    texts = [clause_text(c.text) for c in spec.where.clauses] if spec.where is not None else []
    kept: list[dict[str, Any]] = []
    uni: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    alive_rows = np.unique(row_of[np.flatnonzero(keep.any(axis=0))])
    alive_rows = alive_rows[alive_rows >= 0]

    def chunk_rows(ch: _Chunk) -> dict[str, Any] | None:
        p_ref = ref_of_row[ch.rows]
        at = np.where((p_ref[:, None] >= 0) & keep[:, np.maximum(p_ref, 0)].T, ch.at, -1)
        r, q = np.nonzero(at >= 0)
        if len(r) == 0:
            return None
        cols = ser.at_pairs(*_fields(ch.view), r, at[r, q], width)
        ser.derived(cols)
        cols["LastDay"] = cols["LastDay"].astype(np.int64)
        pos = p_ref[r]
        s = sc.score(cols, regs[0], rs_rating=rs_rating[q, pos], factor=factor[q])
        sig = sc.signal(cols, s, cfg.allow_shorts)
        pl_ = plans(cols, sig, account_size=float(cfg.account_size),
                    risk_pct=float(cfg.risk_pct), target_rr=float(cfg.target_rr),
                    min_stop_atr=float(cfg.min_stop_atr), max_stop_atr=float(cfg.max_stop_atr),
                    max_adv_pct=float(cfg.max_adv_pct))
        m = mcap[q, pos]
        drops: dict[str, int] = {}
        scr = _screen(cfg, ch, at, r, q, ref, pos, m, cols, s, sig, pl_, texts, drops)
        tradeable = np.isin(sig, ("Strong Long", "Long",
                                  *(SHORT_SIGNALS if cfg.allow_shorts else ()))) \
            & np.isfinite(pl_["Entry"]) & (np.nan_to_num(pl_["PositionSize"]) >= 1)
        out = pl._drop(pl.Stage("output", 0, 0), scr.keep, [
            (f"TechRating < {cfg.min_tech_rating:g}", s["TechRating"] < cfg.min_tech_rating),
            ("not tradeable (signal or size)", ~tradeable if cfg.only_tradeable
             else np.zeros(len(r), dtype=bool))])
        sel = np.flatnonzero(out)
        res: dict[str, Any] = {
            "dropped": drops,
            "uni": {"q": q.astype(np.int32), "pos": pos.astype(np.int32),
                    "Signal": _signal_codes(sig), "Close": cols["Close"],
                    **{c: s[c] for c in SCORE_COLUMNS}}}
        if len(sel):
            res["kept"] = {"q": q[sel], "pos": pos[sel], "mcap": m[sel],
                           "cols": {c: v[sel] for c, v in cols.items()},
                           "s": {c: v[sel] for c, v in s.items()}, "sig": sig[sel],
                           "p": {c: v[sel] for c, v in pl_.items()},
                           "matched": scr.matched[sel],
                           "failed": None if scr.failed is None else scr.failed[sel],
                           "user": {c: v[sel] for c, v in scr.columns.items()},
                           "key": None if scr.sort_key is None else scr.sort_key[sel]}
        return res

    for got in _threaded(_chunks(panel, days, alive_rows), chunk_rows, workers, tick,
                         "indicators", len(alive_rows)):
        if got is None:
            continue
        for k, v in got["dropped"].items():
            dropped[k] = dropped.get(k, 0) + v
        uni.append(got["uni"])
        if "kept" in got:
            kept.append(got["kept"])
    timing["pass_b"] = time.perf_counter() - t
    n_pairs = int(keep.sum())
    # Free the (S, N) arrays the output does not read (the chunk function holds their cells).
    keep = mcap = rs_rating = np.empty((0, 0))

    t = time.perf_counter()
    matches, m_pos = _assemble(cfg, text_ref, days, kept)
    matches = text_as_str(matches)
    universe, u_pos = _universe(ref, days, uni)
    timing["output"] = time.perf_counter() - t
    regime = pd.DataFrame([{"AsOf": pd.Timestamp(d.astype(dt.date)), **r.as_dict()}
                           for d, r in zip(days, regs, strict=True)])
    stats = {"seconds_by_step": {k: round(v, 6) for k, v in timing.items()},
             "pairs": n_pairs, "dropped": dropped,
             "epoch_groups": len(_epochs(panel, days)),
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


def _signal_codes(sig: np.ndarray) -> np.ndarray:
    """Signals as int8 codes into ``scores.SIGNALS``."""
    codes = np.zeros(len(sig), dtype=np.int8)
    for i, name in enumerate(sc.SIGNALS[1:], start=1):  # a few comparisons beat hashing
        codes[sig == name] = i
    return codes


def _survivors(cfg: ScanConfig, data: MarketData, ref: pd.DataFrame, pre: dict[str, np.ndarray],
               days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) bool: the listings each session's scan scores (stages 2-5), and market caps."""
    from technic_v4 import pipeline as pl

    dq = days.astype("datetime64[D]")
    list_date = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
    alive = list_date[None, :] <= dq[:, None]
    if "Delisted" in ref:
        gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]")
        alive &= ~(~np.isnat(gone)[None, :] & (gone[None, :] < dq[:, None]))
    _, smart = pl.smart_filter(cfg, ref, np.ones(len(ref), dtype=bool), [])
    alive &= smart[None, :]
    # Shares as of D change only across split ex-dates: one lookup per distinct span.
    shares = np.empty((len(days), len(ref)))
    base = ref["SharesOutstanding"].to_numpy(np.float64)
    acts = data.actions().of_mode("split")
    split_days = np.unique(acts.day)
    span = np.searchsorted(split_days, days.astype(np.int64), side="right")
    for k in np.unique(span):
        qs = np.flatnonzero(span == k)
        got = data.shares_as_of(days[qs[0]].astype(dt.date))
        shares[qs] = base if got is None else got
    mcap = shares * pre["Close"]
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


def _rs_rating(x: np.ndarray) -> np.ndarray:
    """``percentile_rating`` of each session's row of ``x`` (NaN: not rated), at once."""
    ranks = pd.DataFrame(x).rank(axis=1, method="average").to_numpy()
    n = np.isfinite(x).sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = (ranks - 0.5) / n
    return np.clip(np.round(1 + 98 * pct), 1, 99)


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
            texts: list[str], dropped: dict[str, int]) -> Any:
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
    history = Evaluator(Bars.of(ch.view), ref.iloc[ref_rows(ch, ref)].reset_index(drop=True),
                        reuse_builtins=False)
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
        matched = _joined(held, texts)
        if cfg.near_miss:
            failed = _joined(~held, texts)
    user = {name: ev.latest(col.term) for name, col in spec.columns}
    sort_key = None
    if spec.sort is not None:
        sort_key = np.asarray(ev.latest(spec.sort.term), dtype=np.float64)
    elif spec.sort_column is not None:
        sort_key = np.asarray(user[spec.sort_column], dtype=np.float64)
    return pl.Screened(keep, matched, failed, user, sort_key)


def _joined(mask: np.ndarray, texts: list[str]) -> np.ndarray:
    """``pipeline._joined`` (the texts whose column holds, "; "-joined) for many rows: each
    row's pattern as one integer, one join per distinct pattern."""
    from technic_v4 import pipeline as pl

    if mask.shape[1] > 62:
        return pl._joined(mask, texts)
    code = mask.astype(np.int64) @ (np.int64(1) << np.arange(mask.shape[1], dtype=np.int64))
    uniq, inv = np.unique(code, return_inverse=True)
    words = np.array(["; ".join(t for j, t in enumerate(texts) if (int(u) >> j) & 1)
                      for u in uniq], dtype=object)
    return words[inv]


def ref_rows(ch: _Chunk, ref: pd.DataFrame) -> np.ndarray:
    """The reference positions of a chunk's rows (every panel row is a reference listing)."""
    return np.asarray(pd.Index(ref["sid"].to_numpy()).get_indexer(ch.view.sids), np.int64)


def _assemble(cfg: ScanConfig, ref: pd.DataFrame, days: np.ndarray,
              kept: list[dict[str, Any]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Stage 10 over every kept pair: per session, sort, top_n, Rank; the scan's columns (and
    each row's reference position)."""
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
    # Gather only the rows that stay, part by part (each part's arrays freed once read).
    chosen = np.sort(order)
    bounds = np.cumsum([0, *(len(x["q"]) for x in kept)])
    local = [chosen[(chosen >= lo) & (chosen < hi)] - lo
             for lo, hi in itertools.pairwise(bounds.tolist())]

    def cat(get: Callable[[dict[str, Any]], Any]) -> Any:
        first = get(kept[0])
        if isinstance(first, dict):
            return {k: np.concatenate([get(x)[k][i] for x, i in zip(kept, local, strict=True)])
                    for k in first}
        return None if first is None else np.concatenate(
            [get(x)[i] for x, i in zip(kept, local, strict=True)])

    cols, s, p, user = (cat(_getter(k)) for k in ("cols", "s", "p", "user"))
    sig, matched, failed = cat(lambda x: x["sig"]), cat(lambda x: x["matched"]), \
        cat(lambda x: x["failed"])
    kept.clear()  # the rows that stay are copied: free the chunks' arrays
    # Positions of the sorted rows among the chosen ones (the gathered arrays' order).
    at = np.searchsorted(chosen, order)
    pos, mcap, q = pos[chosen], mcap[chosen], q[chosen]
    order = at
    frame = pl._frame(ref, pos, order, np.zeros(len(ref)), cols, s, sig, p)
    frame["MarketCap"] = mcap[order]
    frame["Rank"] = rank.astype(np.int64)
    frame["Matched"] = matched[order]
    if failed is not None:
        frame["Failed"] = failed[order]
    for name, values in user.items():
        frame[name] = values[order]
    frame.insert(0, "AsOf", pd.DatetimeIndex(days[q[order]].astype("datetime64[s]")))
    return frame, pos[order].astype(np.int64)


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
    order = np.lexsort((code[cat["pos"]], cat["q"]))
    sig = pd.Categorical.from_codes(cat["Signal"][order], categories=pd.Index(sc.SIGNALS))
    return pd.DataFrame({"AsOf": pd.DatetimeIndex(days[cat["q"][order]].astype("datetime64[s]")),
                         "Symbol": pd.Categorical.from_codes(code[cat["pos"]][order],
                                                             categories=pd.Index(names)),
                         "Signal": sig, **{c: cat[c][order] for c in ("Close", *SCORE_COLUMNS)}}
                        ), cat["pos"][order].astype(np.int64)


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
                ok = rows & (out < 0) & (listed[i] <= day) & (np.isnat(gone[i]) | (gone[i] >= day))
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
