"""The scan pipeline. Stages run in this order; each counts what it drops and why:

    1. update       keep the local store current with the provider (missing sessions only)
    2. universe     reference data: every listing the store knows
    3. smart_filter listing types, sectors, industries, explicit symbols
    4. max_symbols  order by market cap (shares x close at as-of), keep the first N
    5. pre_screen   cheap checks on the latest-bar snapshot: bars, staleness, history, price,
                    20-session dollar volume, market cap
    6. indicators   2D kernels over the survivors' panel (TA-Lib exact)
    7. scores       regime (SPY), sub-scores, TechRating, RSRating, Signal, Rationale
    8. plans        entry / stop / target / reward-risk / position size
    9. output       min_tech_rating, only_tradeable, sort by TechRating, Rank, top_n

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
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import ScanCancelled
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
)
_STRING_COLUMNS = {"Symbol", "Name", "Sector", "Industry", "Signal", "Rationale", "Type",
                   "Exchange"}

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


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in _STRING_COLUMNS else "float64")
                         for c in COLUMNS})


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
          "scores", "plans", "output")


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
        upd = data.ensure_current(on_progress=lambda d, n: tick("update", d, n))
        stages.append(Stage("update", 0, len(upd.sessions_fetched), time.perf_counter() - t))
        resolved = data.resolve(config.as_of_date)
        as_of = resolved.session
        if resolved.note:
            notes.append(resolved.note)
        v = upd.validation
        if v.rows_dropped:
            why = ", ".join(f"{k} {n:,}" for k, n in v.dropped.items() if n)
            notes.append(f"validation dropped {v.rows_dropped:,} of {v.rows_in:,} new rows ({why})")
        if upd.reference_error:
            notes.append(upd.reference_error)
        if upd.backfill_error:
            notes.append(upd.backfill_error)
        if upd.failed:
            days = sorted(upd.failed)
            notes.append(f"{len(days)} session(s) could not be fetched ({days[0]}"
                         f"{'..' + days[-1] if len(days) > 1 else ''}: "
                         f"{next(iter(upd.failed.values()))}); scanned as of {as_of}, the "
                         "next update retries them")
        empty = config.max_symbols == 0
        if empty:
            frame = empty_frame()
            msg = (f"Nothing scanned: max_symbols=0 asks for no listings (as of {as_of}); "
                   "use max_symbols=None for the whole market.")
            stats = _stats(config, as_of, stages, data, counters, None, t_start, notes, upd)
        else:
            t = time.perf_counter()
            ref = data.reference()
            bound = data.max_bars()
            if config.lookback_days > bound:
                # No symbol has more bars than the store has sessions: the load is capped.
                notes.append(f"lookback_days={config.lookback_days} is more than the {bound} "
                             f"stored sessions: loaded {bound}")
            panel = data.panel(as_of, config.lookback_days)
            panel_seconds = time.perf_counter() - t
            sess_days = data.sessions(as_of).astype(np.int64)
            backend = get_backend(data.settings) if max_workers is None else \
                LocalBackend(max_workers)
            bench_close = None
            if config.lookback_days < REGIME_BARS:
                # The regime needs SPY's SMA200 and 60-session vol, whatever the lookback.
                i = np.flatnonzero(panel.symbols == BENCHMARK)
                if len(i):
                    bench_close = data.panel(as_of, REGIME_BARS, count_rows=i).close[i[0]]
            frame, reg, execution = evaluate(config, ref, panel, as_of, sess_days, backend,
                                             stages, notes, bench_close)
            stats = _stats(config, as_of, stages, data, counters, reg, t_start, notes, upd)
            stats["execution"] = execution
            stats["panel_seconds"] = round(panel_seconds, 6)
    stats["counters"] = counters.as_dict()  # final, after the request closed
    frame.attrs["stats"] = stats
    if not empty:
        msg = _message(frame, stats, reg, as_of)
    return ScanResult(frame, msg, stats)



def evaluate(config: ScanConfig, ref: pd.DataFrame, panel: Panel, as_of: dt.date,
             sess_days: np.ndarray, backend: Backend, stages: _Stages, notes: list[str],
             bench_close: np.ndarray | None = None
             ) -> tuple[pd.DataFrame, sc.Regime, dict[str, Any]]:
    """Stages 2-9 on data already loaded: pure computation, no I/O (runs on Ray as is).

    ``panel`` holds every listing of ``ref`` (any row order) as of ``as_of``; ``sess_days``
    are the sessions up to ``as_of`` (days since 1970) for the staleness check;
    ``bench_close`` is SPY's close history for the regime when the panel is shorter than
    ``REGIME_BARS``.
    """
    tick = stages.tick
    # 2-3. universe and smart filter -----------------------------------------------------
    t = time.perf_counter()
    n_all = len(ref)
    st = Stage("universe", n_all, 0)
    # Point in time: a listing that appears after as-of is not in that day's universe.
    list_date = pd.to_datetime(ref["ListDate"]).to_numpy("datetime64[D]")
    alive = _drop(st, np.ones(n_all, dtype=bool),
                  [("listed after as-of", list_date > np.datetime64(as_of, "D"))])
    st.n_out = int(alive.sum())
    stages.append(st)
    st = Stage("smart_filter", st.n_out, 0)
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
    stages.append(st)

    # 4. snapshot + max_symbols ---------------------------------------------------------
    t = time.perf_counter()
    row_of = pd.Index(panel.sids).get_indexer(ref["sid"].to_numpy())
    close_last = panel.close[row_of, -1]
    mcap = ref["SharesOutstanding"].to_numpy(np.float64) * close_last
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
    stages.append(st)

    # 5. pre-screen -----------------------------------------------------------------------
    t = time.perf_counter()
    rows = row_of[idx]
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
        (f"price < {config.min_price:g}", ~(close_last[idx] >= config.min_price)),
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
    stages.append(st)

    # 6. indicators ---------------------------------------------------------------------
    t = time.perf_counter()
    done = [0]

    def on_chunk(k: int) -> None:
        done[0] += k
        tick("indicators", done[0], len(rows))

    cols = compute(panel, backend, on_chunk=on_chunk, rows=rows)
    execution = backend.describe()
    if backend.fallback_reason:
        notes.append(backend.fallback_reason)
    stages.append(Stage("indicators", len(idx), len(idx), time.perf_counter() - t))

    # 7. scores ---------------------------------------------------------------------------
    t = time.perf_counter()
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
    stages.append(Stage("scores", len(idx), len(idx), time.perf_counter() - t))

    # 8. plans ----------------------------------------------------------------------------
    t = time.perf_counter()
    p = plans(cols, sig, account_size=float(config.account_size),
              risk_pct=float(config.risk_pct), target_rr=float(config.target_rr),
              min_stop_atr=float(config.min_stop_atr), max_stop_atr=float(config.max_stop_atr),
              max_adv_pct=float(config.max_adv_pct))
    stages.append(Stage("plans", len(idx), len(idx), time.perf_counter() - t))

    # 9. output ---------------------------------------------------------------------------
    t = time.perf_counter()
    st = Stage("output", len(idx), 0)
    tradeable = np.isin(sig, ("Strong Long", "Long", *(SHORT_SIGNALS if config.allow_shorts
                                                        else ()))) \
        & np.isfinite(p["Entry"]) & (np.nan_to_num(p["PositionSize"]) >= 1)
    out_keep = _drop(st, np.ones(len(idx), dtype=bool), [
        (f"TechRating < {config.min_tech_rating:g}", s["TechRating"] < config.min_tech_rating),
        ("not tradeable (signal or size)", ~tradeable if config.only_tradeable
         else np.zeros(len(idx), dtype=bool)),
    ])
    sel = np.flatnonzero(out_keep)
    sym = ref["Symbol"].to_numpy(object)[idx]
    order = np.lexsort((sym[sel].astype(str), -s["TechRating"][sel]))
    sel = sel[order]
    if config.top_n is not None and len(sel) > config.top_n:
        st.dropped[f"beyond top_n={config.top_n}"] = len(sel) - config.top_n
        sel = sel[: config.top_n]
    st.n_out = len(sel)
    frame = _frame(ref, idx, sel, mcap, cols, s, sig, p)
    st.seconds = time.perf_counter() - t
    stages.append(st)
    return frame, reg, execution


def _frame(ref: pd.DataFrame, idx: np.ndarray, sel: np.ndarray, mcap: np.ndarray,
           cols: dict[str, np.ndarray], s: dict[str, np.ndarray], sig: np.ndarray,
           p: dict[str, np.ndarray]) -> pd.DataFrame:
    at = idx[sel]
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
            data[c] = cols[c][sel]
        elif c in s:
            data[c] = s[c][sel]
        elif c in p:
            data[c] = p[c][sel]
    data["Signal"] = sig[sel]
    data["Rank"] = np.arange(1, len(sel) + 1, dtype=np.int64)
    data["Rationale"] = sc.rationales(cols, s, sig, sel)
    data["Type"] = text("Type")
    data["Exchange"] = text("Exchange")
    data["LastDate"] = cols["LastDay"][sel].astype("datetime64[D]") if "LastDay" in cols \
        else np.full(len(sel), np.datetime64("NaT"), dtype="datetime64[D]")
    data["Bars"] = cols["Bars"][sel].astype(np.int64)
    return pd.DataFrame(data, columns=list(COLUMNS))


def _stats(config: ScanConfig, as_of: dt.date, stages: list[Stage], data: MarketData,
           counters: Any, reg: sc.Regime | None, t_start: float, notes: list[str],
           upd: Any) -> dict[str, Any]:
    return {
        "as_of": str(as_of),
        "as_of_requested": None if config.as_of_date is None else str(config.as_of_date),
        "config": config.model_dump(mode="json"),
        "stages": [x.as_dict() for x in stages],
        "regime": reg.as_dict() if reg is not None else None,
        "seconds": round(time.perf_counter() - t_start, 6),
        "counters": counters.as_dict(),
        "update": upd.as_dict(),
        "store_version": data.store.version,
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
           f"pre-screen kept {pre['out']:,} of {pre['in']:,}); {len(frame):,} rows: {sigs}; "
           f"regime {reg.label}; hit rate {c['hit_rate']:.1f}%, {c['api_calls_total']} API calls.")
    if len(frame) == 0:
        top = sorted(((v, k) for st in stats["stages"] for k, v in st["dropped"].items()),
                     reverse=True)[:2]
        why = "; ".join(f"{k}: {v}" for v, k in top)
        msg += f" No rows: most dropped by {why}."
    if stats["notes"]:
        msg += " Note: " + "; ".join(stats["notes"]) + "."
    return msg
