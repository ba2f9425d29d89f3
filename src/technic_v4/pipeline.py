"""The scan pipeline. Stages run in this order; each counts what it drops and why:

    1. update       keep the local store current with the provider (missing sessions only)
    2. universe     reference data: the listings trading at as-of (listed by then, not
                    delisted before it)
    3. smart_filter listing types, sectors, industries, explicit symbols
    4. max_symbols  order by market cap (shares x close at as-of), keep the first N
    5. pre_screen   cheap checks on the latest-bar snapshot: bars, staleness, history, price,
                    20-session dollar volume, market cap
    6. indicators   2D kernels over the survivors' panel (TA-Lib exact)
    7. scores       regime (SPY), sub-scores, TechRating, RSRating, Signal, Rationale
    8. plans        entry / stop / target / reward-risk / position size
    9. screen       the screen language: where / preset (Matched, near_miss and Failed),
                    the user's columns and sort key, one term Evaluator over the survivors
   10. output       min_tech_rating, only_tradeable, sort by TechRating (or sort_by), Rank,
                    top_n

Stages 2-10 are functions (:func:`universe` … :func:`output`) that :func:`evaluate` chains; each
returns its :class:`Stage` (counts and reasons) and what the next stage needs.

``scanner_core.run_scan`` is the seed's front door to :func:`scan`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.config.scan import ScanConfig
from technic_v4.config.screen import clause_text
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import ConfigError, ScanCancelled
from technic_v4.execution import Backend, LocalBackend, get_backend
from technic_v4.indicators.compute import compute, dollar_volume20
from technic_v4.plans import SHORT_SIGNALS, plans
from technic_v4.scoring import scores as sc

BENCHMARK = "SPY"
REGIME_BARS = 260  # SPY bars loaded for the regime (SMA200 and 60-session volatility)

COLUMNS = (
    "Symbol", "Name", "Sector", "Industry", "MarketCap", "Close", "Volume", "DollarVolume20",
    "Return1D", "Return5D", "Return21D", "Return63D", "Return126D", "Return252D",
    "SMA20", "SMA50", "SMA200", "EMA21", "RSI14", "MACD", "MACDSignal", "MACDHist", "ATR14",
    "ATRPct", "ADX14", "PlusDI14", "MinusDI14", "BBUpper", "BBMiddle", "BBLower", "BBWidth",
    "High52W", "Low52W", "PctFromHigh52W", "VolumeSurge", "RealizedVol20", "RSRating",
    "TrendScore", "MomentumScore", "VolumeScore", "VolatilityScore", "BreakoutScore",
    "TechRating", "Signal", "Entry", "Stop", "Target", "RewardRisk", "PositionSize", "Rank",
    "Rationale",
    # extras
    "Type", "Exchange", "LastDate", "Bars",
    # the screen: the where clauses each row met ("" without a where)
    "Matched",
)
# With near_miss > 0 a "Failed" column follows Matched; the scan's user columns come last.
_STRING_COLUMNS = {"Symbol", "Name", "Sector", "Industry", "Signal", "Rationale", "Type",
                   "Exchange", "Matched", "Failed"}

Progress = Callable[[str, int, int], None]


@dataclass
class Stage:
    name: str
    n_in: int
    n_out: int
    seconds: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "in": self.n_in, "out": self.n_out,
                "seconds": round(self.seconds, 6), "dropped": dict(self.dropped)}


@dataclass
class ScanResult:
    frame: pd.DataFrame
    message: str
    stats: dict[str, Any]


def empty_frame(config: ScanConfig | None = None) -> pd.DataFrame:
    """No rows, with every column a scan of ``config`` returns (``COLUMNS`` by default)."""
    frame = pd.DataFrame({c: pd.Series(dtype=object if c in _STRING_COLUMNS else "float64")
                          for c in COLUMNS})
    if config is not None:
        if config.near_miss:
            frame["Failed"] = pd.Series(dtype=object)
        for name, col in config.screen().columns:
            frame[name] = pd.Series(dtype=_DTYPE[col.type])
    return frame


def _drop(stage: Stage, mask: np.ndarray, reasons: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Apply reasons in order to the alive ``mask``; each row counts under its first reason."""
    alive = mask.copy()
    for reason, bad in reasons:
        newly = alive & bad
        k = int(newly.sum())
        if k:
            stage.dropped[reason] = stage.dropped.get(reason, 0) + k
        alive &= ~newly
    return alive


STAGES = ("update", "universe", "smart_filter", "max_symbols", "pre_screen", "indicators",
          "scores", "plans", "screen", "output")


class _Stages(list[Stage]):
    """The stage list of one scan; appending a stage reports progress and honours cancel."""

    def __init__(self, progress: Progress | None, cancel: Callable[[], bool] | None) -> None:
        super().__init__()
        self.progress = progress
        self.cancel = cancel

    def tick(self, name: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(name, done, total)
        if self.cancel is not None and self.cancel():
            raise ScanCancelled(f"scan cancelled during {name}")

    def append(self, st: Stage) -> None:
        super().append(st)
        self.tick(st.name, max(st.n_in, st.n_out), max(st.n_in, st.n_out))


def scan(config: ScanConfig, data: MarketData, progress: Progress | None = None,
         max_workers: int | None = None, cancel: Callable[[], bool] | None = None
         ) -> ScanResult:
    """Run every stage for ``config`` (see module docstring).

    ``progress(stage, done, total)`` is called as work advances (stage names in ``STAGES``);
    ``cancel()`` is polled between stages and chunks and, when true, raises ScanCancelled.
    """
    t_start = time.perf_counter()
    stages = _Stages(progress, cancel)
    notes: list[str] = []
    tick = stages.tick

    with data.request() as counters:
        t = time.perf_counter()
        # A scan reads: it never waits for another process's update (the store is readable
        # meanwhile), it scans what is stored and says so.
        upd = data.ensure_current(on_progress=lambda d, n: tick("update", d, n), wait=False)
        stages.append(Stage("update", 0, len(upd.sessions_fetched), time.perf_counter() - t))
        resolved = data.resolve(config.as_of_date)
        as_of = resolved.session
        if resolved.note:
            notes.append(resolved.note)
        v = upd.validation
        if v.rows_dropped:
            why = ", ".join(f"{k} {n:,}" for k, n in v.dropped.items() if n)
            notes.append(f"validation dropped {v.rows_dropped:,} of {v.rows_in:,} new rows ({why})")
        if upd.busy:
            notes.append(f"{upd.busy}: scanned as of {as_of}")
        if upd.reference_error:
            notes.append(upd.reference_error)
        if upd.backfill_error:
            notes.append(upd.backfill_error)
        if upd.actions_error:
            notes.append(upd.actions_error)
        if upd.actions_dropped:
            why = ", ".join(f"{k} {n}" for k, n in sorted(upd.actions_dropped.items()))
            notes.append(f"{sum(upd.actions_dropped.values()):,} corporate-action row(s) "
                         f"dropped ({why})")
        if upd.failed:
            days = sorted(upd.failed)
            notes.append(f"{len(days)} session(s) could not be fetched ({days[0]}"
                         f"{'..' + days[-1] if len(days) > 1 else ''}: "
                         f"{next(iter(upd.failed.values()))}); scanned as of {as_of}, the "
                         "next update retries them")
        empty = config.max_symbols == 0
        if empty:
            frame = empty_frame(config)
            msg = (f"Nothing scanned: max_symbols=0 asks for no listings (as of {as_of}); "
                   "use max_symbols=None for the whole market.")
            stats = _stats(config, as_of, stages, data.store.identity(), counters, None,
                           t_start, notes, upd)
        else:
            t = time.perf_counter()
            before = data.store.identity()
            ref = data.reference()
            bound = data.max_bars()
            if config.lookback_days is not None and config.lookback_days > bound:
                # No symbol has more bars than the store has sessions: the load is capped.
                notes.append(f"lookback_days={config.lookback_days} is more than the {bound} "
                             f"stored sessions: loaded {bound}")
            sess_days = data.sessions(as_of).astype(np.int64)
            check_bars(config, min(bound, len(sess_days)), as_of)
            panel = data.panel(as_of, config.bars_needed)
            panel_seconds = time.perf_counter() - t
            backend = get_backend(data.settings) if max_workers is None else \
                LocalBackend(max_workers)
            bench_close = None
            if config.lookback < REGIME_BARS:
                # The regime needs SPY's SMA200 and 60-session vol, whatever the lookback.
                i = np.flatnonzero(panel.symbols == BENCHMARK)
                if len(i):
                    bench_close = data.panel(as_of, REGIME_BARS, count_rows=i).close[i[0]]
            # The data read is ``before`` when the store did not move during the reads (versions
            # only grow, ids are unique); otherwise unknown (None): a cache must not key it.
            read = before if data.store.identity() == before else None
            frame, reg, execution = evaluate(config, ref, panel, as_of, sess_days, backend,
                                             stages, notes, bench_close,
                                             data.shares_as_of(as_of))
            stats = _stats(config, as_of, stages, read, counters, reg, t_start, notes, upd)
            stats["execution"] = execution
            stats["panel_seconds"] = round(panel_seconds, 6)
    stats["counters"] = counters.as_dict()  # final, after the request closed
    frame.attrs["stats"] = stats
    if not empty:
        msg = _message(frame, stats, reg, as_of)
    return ScanResult(frame, msg, stats)



def check_bars(config: ScanConfig, stored: int, as_of: dt.date) -> None:
    """A screen term needing more sessions than the store holds up to ``as_of`` is an error
    naming the field and the term (``lookback_days`` alone is capped with a note instead)."""
    spec = config.screen()
    hit = spec.longest()
    if spec.bars > stored and hit is not None:
        field, term = hit
        raise ConfigError(field, f"`{term.key}` needs {term.sessions} sessions of history; "
                          f"the store holds {stored} up to {as_of}")


def evaluate(config: ScanConfig, ref: pd.DataFrame, panel: Panel, as_of: dt.date,
             sess_days: np.ndarray, backend: Backend, stages: _Stages, notes: list[str],
             bench_close: np.ndarray | None = None, shares: np.ndarray | None = None
             ) -> tuple[pd.DataFrame, sc.Regime, dict[str, Any]]:
    """Stages 2-10 on data already loaded: pure computation, no I/O (runs on Ray as is).

    ``panel`` holds every listing of ``ref`` (any row order) as of ``as_of``, with at least
    ``config.bars_needed`` bars when the store has them; stages 4-9 see its last
    ``lookback_days`` bars (all of them for None; the built-in columns never depend on the
    screen), the screen stage all of them. ``sess_days`` are the sessions up to ``as_of`` (days since 1970) for the
    staleness check; ``bench_close`` is SPY's close history for the regime when the panel is
    shorter than ``REGIME_BARS``; ``shares`` the shares outstanding of each ``ref`` row as of
    ``as_of`` (``MarketData.shares_as_of``; None: ``ref``'s column).
    """
    long_panel = panel
    panel = panel.tail(config.lookback)
    st, alive = universe(ref, as_of)
    stages.append(st)
    st, alive = smart_filter(config, ref, alive, notes)
    stages.append(st)
    st, idx, row_of, mcap = max_symbols(config, ref, panel, alive, shares)
    stages.append(st)
    st, idx, rows = pre_screen(config, panel, idx, row_of, mcap, sess_days, notes)
    stages.append(st)
    st, cols, execution = indicators(panel, rows, backend, stages.tick, notes)
    stages.append(st)
    st, s, sig, reg = scores(config, cols, panel, bench_close, notes)
    stages.append(st)
    st, p = plans_stage(config, cols, sig)
    stages.append(st)
    if config.screen().active:
        st, scr = screen(config, long_panel, screen_ref(ref, idx, shares),
                         builtin_columns(ref, idx, mcap, cols, s, sig, p), rows=rows)
    else:  # no screen: nothing to copy or evaluate
        st, scr = no_screen(len(idx))
    stages.append(st)
    st, frame = output(config, ref, idx, mcap, cols, s, sig, p, scr)
    stages.append(st)
    return frame, reg, execution


def screen_ref(ref: pd.DataFrame, idx: np.ndarray, shares: np.ndarray | None = None
               ) -> pd.DataFrame:
    """The reference rows ``idx`` the screen reads, with SharesOutstanding as of as-of
    (``shares``, by ``ref`` row; None: ``ref``'s column): the screen's ``market_cap`` must not
    see shares a later split created."""
    sub = ref.iloc[idx].reset_index(drop=True)
    if shares is not None:
        sub["SharesOutstanding"] = np.asarray(shares, dtype=np.float64)[idx]
    return sub


def universe(ref: pd.DataFrame, as_of: dt.date) -> tuple[Stage, np.ndarray]:
    """Stage 2: the listings trading on ``as_of`` (a bool mask over ``ref``): listed by then
    and not delisted before it (``Delisted`` is a listing's last session: on that day it
    still trades)."""
    t = time.perf_counter()
    n_all = len(ref)
    st = Stage("universe", n_all, 0)
    day = np.datetime64(as_of, "D")
    # Point in time: a listing that appears after as-of is not in that day's universe, nor
    # one whose last session was before it.
    list_date = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
    reasons = [("listed after as-of", list_date > day)]
    if "Delisted" in ref:
        gone = pd.to_datetime(ref["Delisted"]).to_numpy("datetime64[D]")
        reasons.append(("delisted before as-of", ~np.isnat(gone) & (gone < day)))
    alive = _drop(st, np.ones(n_all, dtype=bool), reasons)
    st.n_out = int(alive.sum())
    st.seconds = time.perf_counter() - t
    return st, alive


def smart_filter(config: ScanConfig, ref: pd.DataFrame, alive: np.ndarray, notes: list[str]
                 ) -> tuple[Stage, np.ndarray]:
    """Stage 3: listing types, sectors, industries, explicit symbols."""
    t = time.perf_counter()
    st = Stage("smart_filter", int(alive.sum()), 0)
    reasons = [("type " + ty, (ref["Type"] == ty).to_numpy())
               for ty in sorted(set(ref["Type"].dropna().unique()) - set(config.types))]
    reasons.append(("type unknown", ref["Type"].isna().to_numpy()))
    if config.sectors is not None:
        reasons.append(("sector not selected", ~ref["Sector"].isin(config.sectors).to_numpy()))
    if config.industries is not None:
        reasons.append(("industry not selected",
                        ~ref["Industry"].isin(config.industries).to_numpy()))
    if config.symbols is not None:
        reasons.append(("symbol not requested", ~ref["Symbol"].isin(config.symbols).to_numpy()))
        unknown = sorted(set(config.symbols) - set(ref["Symbol"]))
        if unknown:
            notes.append(f"unknown symbols: {', '.join(unknown[:20])}")
    alive = _drop(st, alive, reasons)
    st.n_out = int(alive.sum())
    st.seconds = time.perf_counter() - t
    return st, alive


def max_symbols(config: ScanConfig, ref: pd.DataFrame, panel: Panel, alive: np.ndarray,
                shares: np.ndarray | None = None
                ) -> tuple[Stage, np.ndarray, np.ndarray, np.ndarray]:
    """Stage 4: order the survivors by market cap at as-of (``shares``, by ``ref`` row, as of
    as-of; None: ``ref``'s SharesOutstanding) and keep the first N.

    Returns the stage, the survivors (positions in ``ref``, in that order), each listing's
    panel row (``row_of``, by ``ref`` position) and market cap (by ``ref`` position)."""
    t = time.perf_counter()
    row_of = pd.Index(panel.sids).get_indexer(ref["sid"].to_numpy())
    close_last = panel.close[row_of, -1]
    if shares is None:
        shares = ref["SharesOutstanding"].to_numpy(np.float64)
    mcap = shares * close_last
    idx = np.flatnonzero(alive)
    order = np.lexsort((ref["Symbol"].to_numpy()[idx].astype(str),
                        -np.nan_to_num(mcap[idx], nan=-1.0)))
    idx = idx[order]
    st = Stage("max_symbols", len(idx), len(idx))
    if config.max_symbols is not None and config.max_symbols < len(idx):
        st.dropped["beyond max_symbols (by market cap)"] = len(idx) - config.max_symbols
        idx = idx[: config.max_symbols]
        st.n_out = len(idx)
    st.seconds = time.perf_counter() - t
    return st, idx, row_of, mcap


def pre_screen(config: ScanConfig, panel: Panel, idx: np.ndarray, row_of: np.ndarray,
               mcap: np.ndarray, sess_days: np.ndarray, notes: list[str]
               ) -> tuple[Stage, np.ndarray, np.ndarray]:
    """Stage 5: cheap checks on the latest bars. Returns the survivors and their panel rows."""
    t = time.perf_counter()
    rows = row_of[idx]
    close_last = panel.close[rows, -1]
    nb = panel.n_bars[rows]
    last_day = panel.day[rows, -1]
    stale = len(sess_days) - 1 - (np.searchsorted(sess_days, last_day, side="right") - 1)
    dv20 = dollar_volume20(panel.close[rows, -20:], panel.volume[rows, -20:])  # NaN: fails
    st = Stage("pre_screen", len(idx), 0)
    keep = _drop(st, np.ones(len(idx), dtype=bool), [
        ("no bars", nb == 0),
        (f"stale: last bar > {config.max_stale_sessions} sessions before as-of",
         stale > config.max_stale_sessions),
        (f"history < {config.min_history} sessions", nb < config.min_history),
        (f"price < {config.min_price:g}", ~(close_last >= config.min_price)),
        (f"20-session dollar volume < {config.min_dollar_volume:,.0f}",
         ~(dv20 >= config.min_dollar_volume)),
        # Unknown market cap (no shares outstanding in the reference data) is not screened.
        (f"market cap < {config.min_market_cap:,.0f}", mcap[idx] < config.min_market_cap),
    ])
    unknown_cap = int(np.isnan(mcap[idx[keep]]).sum())
    if unknown_cap and config.min_market_cap > 0:
        notes.append(f"{unknown_cap} listings have no shares outstanding: market cap not "
                     "screened")
    idx, rows = idx[keep], rows[keep]
    st.n_out = len(idx)
    st.seconds = time.perf_counter() - t
    return st, idx, rows


def indicators(panel: Panel, rows: np.ndarray, backend: Backend,
               tick: Callable[[str, int, int], None], notes: list[str]
               ) -> tuple[Stage, dict[str, np.ndarray], dict[str, Any]]:
    """Stage 6: the built-in indicator columns over the survivors' rows of ``panel``."""
    t = time.perf_counter()
    n = len(rows)
    done = [0]

    def on_chunk(k: int) -> None:
        done[0] += k
        tick("indicators", done[0], n)

    cols = compute(panel, backend, on_chunk=on_chunk, rows=rows)
    execution = backend.describe()
    if backend.fallback_reason:
        notes.append(backend.fallback_reason)
    return Stage("indicators", n, n, time.perf_counter() - t), cols, execution


def scores(config: ScanConfig, cols: dict[str, np.ndarray], panel: Panel,
           bench_close: np.ndarray | None, notes: list[str]
           ) -> tuple[Stage, dict[str, np.ndarray], np.ndarray, sc.Regime]:
    """Stage 7: the regime (from SPY in ``panel`` or ``bench_close``), scores and signals."""
    t = time.perf_counter()
    n = len(cols["Close"])
    bench = np.flatnonzero(panel.symbols == BENCHMARK)
    if bench_close is None and len(bench):
        bench_close = panel.close[bench[0]]
    if bench_close is None:
        reg = sc.regime(np.empty(0))
        notes.append(f"benchmark {BENCHMARK} missing: regime assumed SIDEWAYS")
    else:
        reg = sc.regime(bench_close)
        if np.isfinite(bench_close).sum() < sc.REGIME_MIN_BARS:
            notes.append(f"{BENCHMARK} has under {sc.REGIME_MIN_BARS} bars: regime assumed "
                         "SIDEWAYS")
    s = sc.score(cols, reg)
    sig = sc.signal(cols, s, config.allow_shorts)
    return Stage("scores", n, n, time.perf_counter() - t), s, sig, reg


def plans_stage(config: ScanConfig, cols: dict[str, np.ndarray], sig: np.ndarray
                ) -> tuple[Stage, dict[str, np.ndarray]]:
    """Stage 8: entry / stop / target / reward-risk / position size."""
    t = time.perf_counter()
    p = plans(cols, sig, account_size=float(config.account_size),
              risk_pct=float(config.risk_pct), target_rr=float(config.target_rr),
              min_stop_atr=float(config.min_stop_atr), max_stop_atr=float(config.max_stop_atr),
              max_adv_pct=float(config.max_adv_pct))
    n = len(sig)
    return Stage("plans", n, n, time.perf_counter() - t), p


def builtin_columns(ref: pd.DataFrame, idx: np.ndarray, mcap: np.ndarray,
                    cols: dict[str, np.ndarray], s: dict[str, np.ndarray], sig: np.ndarray,
                    p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The built-in output columns a screen may read, for every survivor (``idx`` order),
    by their spelling in ``COLUMNS`` (not Rank, Rationale, Matched, Failed: made later)."""
    r = ref.iloc[idx]
    out: dict[str, np.ndarray] = {c: r[c].to_numpy(object) for c in
                                  ("Symbol", "Name", "Sector", "Industry", "Type", "Exchange")}
    out["MarketCap"] = mcap[idx]
    for src in (cols, s, p):
        for c in COLUMNS:
            if c in src and c not in out:
                out[c] = src[c]
    out["Signal"] = sig
    out["Bars"] = cols["Bars"].astype(np.float64)
    return out


@dataclass
class Screened:
    """What the screen stage hands the output stage, by survivor (``idx`` order)."""

    keep: np.ndarray  # bool: the row passed (or failed at most near_miss clauses)
    matched: np.ndarray  # object: the clauses that held, "; "-joined ("" without a where)
    failed: np.ndarray | None  # object: the clauses that failed (only with near_miss)
    columns: dict[str, np.ndarray]  # the user's columns, in their order
    sort_key: np.ndarray | None  # float64: replaces TechRating as the sort key


def screen(config: ScanConfig, sub: Panel, ref: pd.DataFrame,
           builtin: dict[str, np.ndarray], rows: np.ndarray | None = None,
           evaluator: Any = None) -> tuple[Stage, Screened]:
    """Stage 9: the scan's ``where``/``preset``, ``columns`` and ``sort_by`` over the survivors.

    ``sub`` holds the survivors' rows (or, with ``rows``, those rows of it: only the fields
    the screen reads are gathered) with every bar the screen needs, ``ref`` their reference
    rows and ``builtin`` their built-in columns (:func:`builtin_columns`). One Evaluator serves
    where, columns and sort key, so every distinct term is computed once; screens over the same
    survivors and bars may share one (``evaluator``: the daily run's screens share their terms). A row failing the
    where counts under its first failing top-level clause (``where: <clause>``)."""
    t = time.perf_counter()
    spec = config.screen()
    n = len(sub.symbols) if rows is None else len(rows)
    st = Stage("screen", n, n)
    keep = np.ones(n, dtype=bool)
    matched = np.full(n, "", dtype=object)
    failed: np.ndarray | None = None
    user: dict[str, np.ndarray] = {}
    sort_key: np.ndarray | None = None
    if spec.active and n:
        from technic_v4.terms.engine import Evaluator, clause_mask
        from technic_v4.terms.kernels import Bars

        # Built-in columns were computed on the last lookback_days bars: a term equal to one is
        # read from it only when the screen's panel is that wide (else it is computed here).
        ev = evaluator if evaluator is not None else Evaluator(
            Bars.of(sub, rows), ref, builtin,
            reuse_builtins=sub.close.shape[1] <= config.lookback)
        # Every root first: a key shared by where, columns and sort is computed once.
        ev.plan([*(() if spec.where is None else (c.term for c in spec.where.clauses)),
                 *(c.term for _, c in spec.columns),
                 *(() if spec.sort is None else (spec.sort.term,))])
        if spec.where is not None:
            texts = [clause_text(c.text) for c in spec.where.clauses]
            held = np.asarray(clause_mask(spec.where, ev), dtype=bool).reshape(n, len(texts))
            n_failed = (~held).sum(axis=1)
            keep = n_failed <= config.near_miss
            first = np.argmin(held, axis=1)  # the first failing clause of each failing row
            for j, text in enumerate(texts):
                k = int((~keep & (first == j)).sum())
                if k:
                    st.dropped[f"where: {text}"] = k
            matched = _joined(held, texts)
            if config.near_miss:
                failed = _joined(~held, texts)
        for name, col in spec.columns:
            user[name] = ev.latest(col.term)
        if spec.sort is not None:
            sort_key = np.asarray(ev.latest(spec.sort.term), dtype=np.float64)
        elif spec.sort_column is not None:
            sort_key = np.asarray(user[spec.sort_column], dtype=np.float64)
    elif spec.active:  # no survivors: empty columns of the right kind
        user = {name: np.empty(0, dtype=_DTYPE[col.type]) for name, col in spec.columns}
        failed = np.empty(0, dtype=object) if config.near_miss else None
        sort_key = np.empty(0) if spec.sort_by_set else None
    st.n_out = int(keep.sum())
    st.seconds = time.perf_counter() - t
    return st, Screened(keep, matched, failed, user, sort_key)


def no_screen(n: int) -> tuple[Stage, Screened]:
    """Stage 9 for a scan without where, columns or sort_by: every row passes, Matched empty."""
    return Stage("screen", n, n), Screened(np.ones(n, dtype=bool), np.full(n, "", dtype=object),
                                           None, {}, None)


_DTYPE = {"number": np.float64, "bool": np.bool_, "string": object}


def _joined(mask: np.ndarray, texts: list[str]) -> np.ndarray:
    """Per row, the texts whose column in ``mask`` is true, "; "-joined (one join per distinct
    pattern, not per row)."""
    if mask.shape[0] == 0:
        return np.empty(0, dtype=object)
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    words = np.array(["; ".join(t for t, m in zip(texts, pat, strict=True) if m)
                      for pat in patterns], dtype=object)
    return words[np.asarray(inverse).reshape(-1)]


def output(config: ScanConfig, ref: pd.DataFrame, idx: np.ndarray, mcap: np.ndarray,
           cols: dict[str, np.ndarray], s: dict[str, np.ndarray], sig: np.ndarray,
           p: dict[str, np.ndarray], scr: Screened) -> tuple[Stage, pd.DataFrame]:
    """Stage 10: min_tech_rating, only_tradeable, sort (TechRating or sort_by), Rank, top_n."""
    t = time.perf_counter()
    alive = np.flatnonzero(scr.keep)
    st = Stage("output", len(alive), 0)
    tradeable = np.isin(sig, ("Strong Long", "Long", *(SHORT_SIGNALS if config.allow_shorts
                                                        else ()))) \
        & np.isfinite(p["Entry"]) & (np.nan_to_num(p["PositionSize"]) >= 1)
    out_keep = _drop(st, scr.keep, [
        (f"TechRating < {config.min_tech_rating:g}", s["TechRating"] < config.min_tech_rating),
        ("not tradeable (signal or size)", ~tradeable if config.only_tradeable
         else np.zeros(len(idx), dtype=bool)),
    ])
    sel = np.flatnonzero(out_keep)
    sym = ref["Symbol"].to_numpy(object)[idx]
    key = s["TechRating"] if scr.sort_key is None else scr.sort_key
    order = np.lexsort((sym[sel].astype(str), -key[sel]))  # NaN keys last
    sel = sel[order]
    if config.top_n is not None and len(sel) > config.top_n:
        st.dropped[f"beyond top_n={config.top_n}"] = len(sel) - config.top_n
        sel = sel[: config.top_n]
    st.n_out = len(sel)
    frame = _frame(ref, idx, sel, mcap, cols, s, sig, p, {
        "Matched": scr.matched[sel],
        **({} if scr.failed is None else {"Failed": scr.failed[sel]}),
        **{name: values[sel] for name, values in scr.columns.items()}})
    st.seconds = time.perf_counter() - t
    return st, frame


def _frame(ref: pd.DataFrame, idx: np.ndarray, sel: np.ndarray | None, mcap: np.ndarray,
           cols: dict[str, np.ndarray], s: dict[str, np.ndarray], sig: np.ndarray,
           p: dict[str, np.ndarray], extra: dict[str, Any] | None = None) -> pd.DataFrame:
    """The output frame of the rows ``sel`` (None: every row, in order, without a copy
    before the frame's own) of the stage columns; ``idx``: their reference rows. ``extra``:
    columns (of the output rows) replacing or following the standard ones, given here
    because setting a column of a built frame copies its whole block."""
    if sel is None:  # a replay's millions of rows: no gathered copy of every column
        def pick(a: np.ndarray) -> np.ndarray:
            return a
        n = len(idx)
    else:
        def pick(a: np.ndarray) -> np.ndarray:
            return a[sel]
        n = len(sel)
    at = pick(idx)
    inferred = pd.StringDtype(na_value=np.nan)  # what pandas makes of an object array of str

    def text(name: str) -> Any:
        # Reference strings already in that dtype are taken as they are (no round trip
        # through Python objects); others become that dtype as before.
        a = ref[name].array
        return a.take(at) if a.dtype == inferred else a.to_numpy(object)[at]

    data: dict[str, Any] = {"Symbol": text("Symbol"), "Name": text("Name"),
                            "Sector": text("Sector"), "Industry": text("Industry"),
                            "MarketCap": mcap[at]}
    for c in COLUMNS:
        if c in data:
            continue
        if c in cols:
            data[c] = pick(cols[c])
        elif c in s:
            data[c] = pick(s[c])
        elif c in p:
            data[c] = pick(p[c])
    data["Signal"] = pick(sig)
    data["Rank"] = np.arange(1, n + 1, dtype=np.int64)
    data["Rationale"] = sc.rationales(cols, s, sig, sel)
    data["Type"] = text("Type")
    data["Exchange"] = text("Exchange")
    data["LastDate"] = pick(cols["LastDay"]).astype("datetime64[D]") if "LastDay" in cols \
        else np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    data["Bars"] = pick(cols["Bars"]).astype(np.int64)
    data.update(extra or {})
    names = [*COLUMNS, *(c for c in data if c not in COLUMNS)]
    if sel is None:
        return _frame_as_is(data, names)
    return pd.DataFrame(data, columns=names)


def _frame_as_is(data: dict[str, Any], names: list[str]) -> pd.DataFrame:
    """``pd.DataFrame(data, columns=names)`` without copying a column: each becomes its own
    block (a replay's frame of millions of rows; the constructor copied every float column
    into one block: ~1 GB and ~2.5 s at 2.6 M rows). Equal frames (tested); pandas without
    ``create_dataframe_from_blocks`` builds it the usual way."""
    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:  # pandas < 3
        return pd.DataFrame(data, columns=names)
    n = len(next(iter(data.values())))
    blocks: list[tuple[Any, np.ndarray]] = []
    for j, name in enumerate(names):
        v = data[name]
        if isinstance(v, np.ndarray) and v.dtype != object:
            if v.dtype.kind == "M" and np.datetime_data(v.dtype)[0] in ("Y", "M", "W", "D",
                                                                         "h", "m"):
                v = v.astype("datetime64[s]")  # the unit pandas gives it (seconds at least)
            blocks.append((v.reshape(1, -1), np.array([j])))
        else:  # what the constructor infers (str for Python strings, else object)
            a = pd.Series(v, copy=False).array
            if isinstance(a, pd.arrays.NumpyExtensionArray):
                blocks.append((a.to_numpy().reshape(1, -1), np.array([j])))
            else:
                blocks.append((a, np.array([j])))
    return create_dataframe_from_blocks(blocks, index=pd.RangeIndex(n), columns=pd.Index(names))


def _stats(config: ScanConfig, as_of: dt.date, stages: list[Stage],
           store: tuple[str | None, int] | None, counters: Any, reg: sc.Regime | None,
           t_start: float, notes: list[str], upd: Any) -> dict[str, Any]:
    return {
        "as_of": str(as_of),
        "as_of_requested": None if config.as_of_date is None else str(config.as_of_date),
        "config": config.model_dump(mode="json"),
        "stages": [x.as_dict() for x in stages],
        "regime": reg.as_dict() if reg is not None else None,
        "seconds": round(time.perf_counter() - t_start, 6),
        "counters": counters.as_dict(),
        "update": upd.as_dict(),
        # The store ``(id, version)`` the reference data and panels were read from; None
        # when another process wrote the store while they were read.
        "store_id": None if store is None else store[0],
        "store_version": None if store is None else store[1],
        "notes": notes,
    }


def _message(frame: pd.DataFrame, stats: dict[str, Any], reg: sc.Regime, as_of: dt.date) -> str:
    stages = {x["stage"]: x for x in stats["stages"]}
    counts = frame["Signal"].value_counts()
    sigs = ", ".join(f"{counts[k]} {k}" for k in sc.SIGNALS if k in counts) or "no rows"
    c = stats["counters"]
    pre = stages["pre_screen"]
    msg = (f"Scanned {pre['out']:,} of {stages['universe']['in']:,} listings as of {as_of} "
           f"in {stats['seconds']:.2f}s (smart filter kept {stages['smart_filter']['out']:,}, "
           f"pre-screen kept {pre['out']:,} of {pre['in']:,}"
           + (f", screen kept {scr['out']:,}" if (scr := stages.get("screen")) is not None
              and scr["in"] != scr["out"] else "")
           + f"); {len(frame):,} rows: {sigs}; "
           f"regime {reg.label}; hit rate {c['hit_rate']:.1f}%, {c['api_calls_total']} API calls.")
    if len(frame) == 0:
        top = sorted(((v, k) for st in stats["stages"] for k, v in st["dropped"].items()),
                     reverse=True)[:2]
        why = "; ".join(f"{k}: {v}" for v, k in top)
        msg += f" No rows: most dropped by {why}."
    if stats["notes"]:
        msg += " Note: " + "; ".join(stats["notes"]) + "."
    return msg
