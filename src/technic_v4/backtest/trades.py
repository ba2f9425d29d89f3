"""Trade plans played out: each signal's stop/target race, and an equal-risk portfolio.

Two numba kernels (plain arrays, no pandas) and a thin layer that validates inputs and returns
DataFrames.

Contract
--------
Panel orientation
    ``open, high, low, close`` are float arrays shaped ``(n_listings, n_sessions)``: column ``s``
    is calendar session ``s`` for every listing (session-aligned, not right-aligned), split-adjusted,
    NaN where the listing has no bar. A bar exists when all four prices are finite.
Signals
    ``(listing, session d, stop, target, rank)``: a long plan made at the close of ``d``
    (``technic_v4.plans``: Entry = close of ``d``, Stop below, Target = Entry + rr × risk).
    A plan with a non-finite level or ``stop >= target`` is ``invalid`` and never entered.
Delistings
    ``last_session[l]`` is the listing's last trading session (from reference data) or ``-1``
    while it still trades (bars after it are ignored). Without it, a listing whose last bar comes before the panel's last
    session counts as delisted there. That inference peeks (a halt running to the panel's end
    looks like a delisting), so the replay should pass the store's delisting sessions.

Trade rules (``simulate_trades``)
    * Entry at the open of the first bar after ``d`` among sessions ``d+1 … d+entry_window``
      (``d+1`` unless the listing is halted); no such bar: ``no_entry``, counted, no trade.
    * The entry bar is held bar 1: its low/high come after its open, so they can hit a level.
    * Each held bar: an open at/below the stop exits at that open (``gap_stop``), at/above the
      target at that open (``gap_target``); else low ≤ stop exits at the stop, high ≥ target at
      the target; both touched in one bar is the stop (the intrabar path is unknown: conservative).
    * An entry open already at/below the stop or at/above the target exits at once at that open
      (``gap_stop`` / ``gap_target``, 0 bars held, R = 0): the orders would have filled and
      closed at the same print, so the trade happened and is kept, flat.
    * No hit within ``max_hold`` bars: exit at the close of the last held bar (``time``).
      Holding counts bars traded; halted sessions (no bar) do not count.
    * Delisted while held: exit at the last close (``delisted``). Data ending while held: the
      trade is ``open``, marked at the last close, and left out of the summary.
    * R multiple = (exit − entry) / (entry − stop) with ``entry`` the ACTUAL fill (next open).
      The risk really taken is fill − stop, and sizing uses the same risk (``simulate_portfolio``),
      so a trade's R times the risked cash is exactly its P&L; a stop-out is −1 R and only a gap
      through the stop is worse. Measuring from the plan's Entry (the signal close) would mix
      the overnight gap into the unit. ``return`` is exit / entry − 1. No costs or slippage.

Portfolio rules (``simulate_portfolio``)
    Sessions run in order; in each session: entries at the open, then exits, then marking at the
    close. Entries are taken by entry session, then ``rank`` (smaller first, NaN last), then
    listing index. A new trade is skipped when every slot is taken (``full``; a slot frees the
    session after its exit), when the listing is already held (``held``), or when its actual risk
    per share is not positive (``no_risk``). Shares = risk_fraction × equity at the previous close
    / (entry − stop), fractional, capped by ``max_position_fraction`` × that equity / entry and by
    the cash on hand (no margin; ``no_cash`` when less than a billionth of the equity is
    left). Positions without a bar are
    marked at their last close. Equity = cash + marked positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit

from technic_v4.errors import ConfigError

__all__ = [
    "PORTFOLIO_STATUS",
    "REASONS",
    "SESSIONS_PER_YEAR",
    "PortfolioResult",
    "simulate_portfolio",
    "simulate_trades",
    "simulate_trades_by_listings",
    "trade_summary",
]

# Reason codes of the trade kernel (index = code).
REASONS = ("no_entry", "stop", "target", "time", "delisted", "gap_stop", "gap_target", "open",
           "invalid")
NO_ENTRY, STOP, TARGET, TIME, DELISTED, GAP_STOP, GAP_TARGET, OPEN, INVALID = range(9)
CLOSED_REASONS = ("stop", "target", "time", "delisted", "gap_stop", "gap_target")

# Portfolio status codes (index = code).
MIN_POSITION = 1e-9  # a position worth less than this share of equity is not taken (no_cash)
PORTFOLIO_STATUS = ("taken", "full", "held", "no_risk", "no_cash", "before_start", "not_entered")
TAKEN, FULL, HELD, NO_RISK, NO_CASH, BEFORE_START, NOT_ENTERED = range(7)

SESSIONS_PER_YEAR = 252

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


# ---------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------


@njit(**_JIT)
def _bar(o: Any, h: Any, lo: Any, c: Any, row: int, s: int) -> bool:
    return (np.isfinite(o[row, s]) and np.isfinite(h[row, s]) and np.isfinite(lo[row, s])
            and np.isfinite(c[row, s]))


@njit(**_JIT)
def _simulate_nb(o: Any, h: Any, lo: Any, c: Any, listing: Any, session: Any, stop: Any,
                 target: Any, last_session: Any, max_hold: int, entry_window: int,
                 signals: Any, row0: int,
                 entry_s: Any, entry_px: Any, exit_s: Any, exit_px: Any, reason: Any,
                 bars: Any) -> None:
    """The signals ``signals`` (positions in the signal arrays) on panels whose row 0 is
    listing ``row0``."""
    n_sessions = o.shape[1]
    for ii in range(signals.shape[0]):
        i = signals[ii]
        row = listing[i] - row0
        d = session[i]
        st = stop[i]
        tg = target[i]
        entry_s[i] = -1
        exit_s[i] = -1
        entry_px[i] = np.nan
        exit_px[i] = np.nan
        bars[i] = 0
        if not (np.isfinite(st) and np.isfinite(tg) and st < tg):
            reason[i] = INVALID
            continue
        ls = last_session[row + row0]
        delisted = 0 <= ls < n_sessions
        last = ls if delisted else n_sessions - 1
        e = -1
        for s in range(d + 1, min(d + entry_window, last) + 1):
            if _bar(o, h, lo, c, row, s):
                e = s
                break
        if e < 0:
            reason[i] = NO_ENTRY
            continue
        px = float(o[row, e])
        entry_s[i] = e
        entry_px[i] = px
        if px <= st or px >= tg:
            exit_s[i] = e
            exit_px[i] = px
            reason[i] = GAP_STOP if px <= st else GAP_TARGET
            continue
        held = 0
        seen = e
        done = False
        for s in range(e, last + 1):
            if not _bar(o, h, lo, c, row, s):
                continue
            held += 1
            seen = s
            op = o[row, s]
            if s != e and op <= st:
                reason[i], exit_px[i] = GAP_STOP, op
            elif s != e and op >= tg:
                reason[i], exit_px[i] = GAP_TARGET, op
            elif lo[row, s] <= st:
                reason[i], exit_px[i] = STOP, st
            elif h[row, s] >= tg:
                reason[i], exit_px[i] = TARGET, tg
            elif held == max_hold:
                reason[i], exit_px[i] = TIME, c[row, s]
            else:
                continue
            done = True
            break
        if not done:
            reason[i] = DELISTED if delisted else OPEN
            exit_px[i] = c[row, seen]
        exit_s[i] = seen
        bars[i] = held


@njit(**_JIT)
def _last_bar_nb(close: Any) -> Any:
    """Each row's last session with a close, or -1 when that is the panel's last session."""
    n, t = close.shape
    out = np.full(n, -1, dtype=np.int64)
    for row in range(n):
        for s in range(t - 1, -1, -1):
            if np.isfinite(close[row, s]):
                if s < t - 1:
                    out[row] = s
                break
    return out


@njit(**_JIT)
def _portfolio_nb(close: Any, listing: Any, entry_s: Any, entry_px: Any, stop: Any,
                  exit_s: Any, exit_px: Any, start: int, equity0: float, risk_fraction: float,
                  max_positions: int, max_position_fraction: float, shares: Any, status: Any,
                  equity: Any, cash_out: Any, invested: Any, n_open: Any) -> None:
    n_listings, n_sessions = close.shape
    m = listing.shape[0]
    held = np.zeros(n_listings, dtype=np.bool_)
    p_trade = np.empty(max_positions, dtype=np.int64)
    p_mark = np.empty(max_positions, dtype=np.float64)
    npos = 0
    cash = equity0
    prev_equity = equity0
    k = 0
    while k < m and entry_s[k] < start:
        status[k] = BEFORE_START
        shares[k] = 0.0
        k += 1
    for s in range(start, n_sessions):
        # Entries at the open, sized on the previous close's equity.
        while k < m and entry_s[k] == s:
            t = k
            k += 1
            shares[t] = 0.0
            risk = entry_px[t] - stop[t]
            if not risk > 0:
                status[t] = NO_RISK
                continue
            if held[listing[t]]:
                status[t] = HELD
                continue
            if npos >= max_positions:
                status[t] = FULL
                continue
            sh = risk_fraction * prev_equity / risk
            if max_position_fraction > 0:
                sh = min(sh, max_position_fraction * prev_equity / entry_px[t])
            sh = min(sh, cash / entry_px[t])
            # Rounding leaves ~1e-12 of the equity as cash once it is all invested: that is no
            # cash (else a position of 1e-16 shares, taken or not by the order of the sums).
            if not sh * entry_px[t] > MIN_POSITION * prev_equity:
                status[t] = NO_CASH
                continue
            status[t] = TAKEN
            shares[t] = sh
            cash -= sh * entry_px[t]
            held[listing[t]] = True
            p_trade[npos] = t
            p_mark[npos] = entry_px[t]
            npos += 1
        # Exits during the session, then marks at the close.
        value = 0.0
        j = 0
        while j < npos:
            t = p_trade[j]
            if exit_s[t] == s:
                cash += shares[t] * exit_px[t]
                held[listing[t]] = False
                npos -= 1
                p_trade[j] = p_trade[npos]
                p_mark[j] = p_mark[npos]
                continue
            px = close[listing[t], s]
            if np.isfinite(px):
                p_mark[j] = px
            value += shares[t] * p_mark[j]
            j += 1
        cash_out[s - start] = cash
        invested[s - start] = value
        equity[s - start] = cash + value
        n_open[s - start] = npos
        prev_equity = cash + value


# ---------------------------------------------------------------------------------------
# Validation and the DataFrame layer
# ---------------------------------------------------------------------------------------


def _panel(name: str, a: Any, shape: tuple[int, ...] | None) -> npt.NDArray[np.floating[Any]]:
    arr = np.asarray(a)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ConfigError(name, f"must be a 2D (listings × sessions) array, got {arr.ndim}D")
    if shape is not None and arr.shape != shape:
        raise ConfigError(name, f"shape {arr.shape} differs from open's {shape}")
    return np.ascontiguousarray(arr)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(name, f"must be an integer ≥ 1, got {value!r}")
    return int(value)


def _last_session(close: npt.NDArray[Any], last_session: Any) -> IntArray:
    n = close.shape[0]
    if last_session is not None:
        ls = np.asarray(last_session, dtype=np.int64)
        if ls.shape != (n,):
            raise ConfigError("last_session", f"needs one session index per listing ({n}), "
                              f"got shape {ls.shape}; use -1 for listings still trading")
        return np.ascontiguousarray(ls)
    return _last_bar_nb(close)


def _signals(m: int, listing: Any, session: Any, stop: Any, target: Any, rank: Any,
             n: int, t: int) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]:
    lst = np.ascontiguousarray(np.asarray(listing, dtype=np.int64))
    ses = np.ascontiguousarray(np.asarray(session, dtype=np.int64))
    stp = np.ascontiguousarray(np.asarray(stop, dtype=np.float64))
    tgt = np.ascontiguousarray(np.asarray(target, dtype=np.float64))
    rnk = (np.full(m, np.nan) if rank is None else np.asarray(rank, dtype=np.float64))
    for name, arr in (("session", ses), ("stop", stp), ("target", tgt), ("rank", rnk)):
        if arr.shape != (m,):
            raise ConfigError(name, f"needs one value per signal ({m}), got shape {arr.shape}")
    if m and (lst.min() < 0 or lst.max() >= n):
        raise ConfigError("listing", f"indices must be in 0 … {n - 1} (rows of the panel)")
    if m and (ses.min() < 0 or ses.max() >= t):
        raise ConfigError("session", f"indices must be in 0 … {t - 1} (columns of the panel)")
    return lst, ses, stp, tgt, rnk


class _Outcomes:
    def __init__(self, m: int) -> None:
        self.entry_s = np.empty(m, np.int64)
        self.exit_s = np.empty(m, np.int64)
        self.entry_px = np.empty(m, np.float64)
        self.exit_px = np.empty(m, np.float64)
        self.reason = np.empty(m, np.int8)
        self.bars = np.empty(m, np.int64)

    def play(self, o: Any, h: Any, lo: Any, c: Any, lst: IntArray, ses: IntArray,
             stp: FloatArray, tgt: FloatArray, ls: IntArray, max_hold: int, entry_window: int,
             signals: IntArray, row0: int) -> None:
        _simulate_nb(o, h, lo, c, lst, ses, stp, tgt, ls, max_hold, entry_window, signals,
                     row0, self.entry_s, self.entry_px, self.exit_s, self.exit_px, self.reason,
                     self.bars)

    def frame(self, lst: IntArray, ses: IntArray, stp: FloatArray, tgt: FloatArray,
              rnk: FloatArray) -> pd.DataFrame:
        entry_px, exit_px = self.entry_px, self.exit_px
        with np.errstate(invalid="ignore", divide="ignore"):
            risk = entry_px - stp
            r = np.where(exit_px == entry_px, 0.0, (exit_px - entry_px) / risk)
            ret = exit_px / entry_px - 1.0
        return pd.DataFrame({
            "listing": lst, "signal_session": ses, "stop": stp, "target": tgt, "rank": rnk,
            "entry_session": self.entry_s, "entry_price": entry_px,
            "exit_session": self.exit_s, "exit_price": exit_px,
            "reason": pd.Categorical.from_codes(self.reason.astype(np.int64),
                                                categories=pd.Index(REASONS)),
            "bars_held": self.bars, "r_multiple": r, "return": ret,
        })


def simulate_trades(open_: Any, high: Any, low: Any, close: Any, *, listing: Any, session: Any,
                    stop: Any, target: Any, rank: Any = None, max_hold: int = 20,
                    entry_window: int = 5, last_session: Any = None) -> pd.DataFrame:
    """Play out each signal's plan on the bars (rules in the module docstring).

    ``listing``/``session`` are row/column indices of the panel; ``rank`` orders same-session
    entries in ``simulate_portfolio`` (smaller first, like the scan's Rank; NaN last);
    ``last_session`` holds each listing's delisting session, -1 (any negative) while listed.
    One row per signal, in input order: ``listing, signal_session, stop, target, rank,
    entry_session, entry_price, exit_session, exit_price, reason, bars_held, r_multiple,
    return``. Sessions are column indices (-1 where there is none); prices NaN when not entered.
    """
    o = _panel("open", open_, None)
    h, lo, c = (_panel(n, a, o.shape) for n, a in (("high", high), ("low", low),
                                                     ("close", close)))
    max_hold = _positive_int("max_hold", max_hold)
    entry_window = _positive_int("entry_window", entry_window)
    m = np.asarray(listing).shape[0]
    n, t = o.shape
    lst, ses, stp, tgt, rnk = _signals(m, listing, session, stop, target, rank, n, t)
    ls = _last_session(c, last_session)
    out = _Outcomes(m)
    out.play(o, h, lo, c, lst, ses, stp, tgt, ls, max_hold, entry_window,
             np.arange(m, dtype=np.int64), 0)
    return out.frame(lst, ses, stp, tgt, rnk)


BarsOf = Callable[[np.ndarray], Sequence[Any]]


def simulate_trades_by_listings(bars_of: BarsOf, n_listings: int, n_sessions: int, *,
                                listing: Any, session: Any, stop: Any, target: Any,
                                rank: Any = None, max_hold: int = 20, entry_window: int = 5,
                                last_session: Any, chunk: int = 256) -> pd.DataFrame:
    """:func:`simulate_trades` on a panel too big to hold: ``bars_of(rows)`` gives the
    ``(len(rows), n_sessions)`` open, high, low and close of the listings ``rows`` (a range
    of ``chunk`` consecutive listings at a time), and each chunk's signals are played out on
    them, listing by listing.  The same rows as ``simulate_trades`` on the whole panel;
    ``last_session`` (one per listing) is required (inferring it would need every close)."""
    chunk = _positive_int("chunk", chunk)
    max_hold = _positive_int("max_hold", max_hold)
    entry_window = _positive_int("entry_window", entry_window)
    m = np.asarray(listing).shape[0]
    lst, ses, stp, tgt, rnk = _signals(m, listing, session, stop, target, rank, n_listings,
                                       n_sessions)
    ls = np.ascontiguousarray(np.asarray(last_session, dtype=np.int64))
    if ls.shape != (n_listings,):
        raise ConfigError("last_session", f"needs one session index per listing "
                          f"({n_listings}), got shape {ls.shape}; use -1 for listings still "
                          "trading")
    out = _Outcomes(m)
    by_listing = np.argsort(lst, kind="stable").astype(np.int64)
    bounds = np.searchsorted(lst[by_listing], np.arange(0, n_listings + chunk, chunk))
    for k in range(len(bounds) - 1):
        a, b = int(bounds[k]), int(bounds[k + 1])
        if a == b:
            continue
        row0 = k * chunk
        rows = np.arange(row0, min(row0 + chunk, n_listings), dtype=np.int64)
        o, h, lo, c = (_panel(f, x, (len(rows), n_sessions)) for f, x in zip(
            ("open", "high", "low", "close"), bars_of(rows), strict=True))
        out.play(o, h, lo, c, lst, ses, stp, tgt, ls, max_hold, entry_window,
                 by_listing[a:b], row0)
    return out.frame(lst, ses, stp, tgt, rnk)


def _reason_codes(reason: pd.Series) -> npt.NDArray[np.int64]:
    """The REASONS code of each row (no re-coding of a column already in REASONS' order)."""
    dtype = reason.dtype
    if isinstance(dtype, pd.CategoricalDtype) and list(dtype.categories) == list(REASONS):
        codes = reason.cat.codes.to_numpy()
    else:
        codes = pd.Categorical(reason, categories=pd.Index(REASONS)).codes
    return np.asarray(codes, dtype=np.int64)


def trade_summary(trades: pd.DataFrame) -> dict[str, Any]:
    """Statistics of the closed trades (``open``, ``no_entry`` and ``invalid`` rows are counted
    but left out): win rate (R > 0), mean/median R, expectancy in R (win rate × average win +
    loss rate × average loss, which equals mean R), mean return, profit factor (sum of winning R
    over the absolute sum of losing R: the dollar profit factor under equal risk; inf without
    losses), mean bars held, and the count of every reason."""
    code = _reason_codes(trades["reason"])
    closed = np.isin(code, [REASONS.index(x) for x in CLOSED_REASONS])
    r = trades["r_multiple"].to_numpy(np.float64)[closed]
    wins, losses = r[r > 0], r[r < 0]
    n = len(r)
    win_rate = len(wins) / n if n else math.nan
    avg_win = float(wins.mean()) if len(wins) else 0.0
    avg_loss = float(losses.mean()) if len(losses) else 0.0
    gross_loss = -float(losses.sum())
    tally = np.bincount(code[code >= 0], minlength=len(REASONS))
    counts = {k: int(tally[i]) for i, k in enumerate(REASONS)}
    ret = pd.Series(trades["return"].to_numpy(np.float64)[closed])
    held = pd.Series(trades["bars_held"].to_numpy()[closed])
    return {
        "signals": len(trades),
        "trades": n,
        "win_rate": win_rate,
        "mean_r": float(r.mean()) if n else math.nan,
        "median_r": float(np.median(r)) if n else math.nan,
        "avg_win_r": avg_win,
        "avg_loss_r": avg_loss,
        "expectancy_r": (len(wins) * avg_win + len(losses) * avg_loss) / n if n else math.nan,
        "mean_return": float(ret.mean()) if n else math.nan,
        "profit_factor": (float(wins.sum()) / gross_loss if gross_loss > 0
                          else (math.inf if len(wins) else math.nan)),
        "mean_bars_held": float(held.mean()) if n else math.nan,
        "by_reason": {k: int(counts.get(k, 0)) for k in REASONS},
    }


@dataclass(frozen=True)
class PortfolioResult:
    """``curve``: one row per session from ``start`` (equity, cash, invested, positions, drawdown
    at the close); ``trades``: the input trades with ``status`` and ``shares``; ``stats``: CAGR,
    max drawdown with its peak/trough/recovery sessions, exposure, counts."""

    curve: pd.DataFrame
    trades: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _max_drawdown(equity: FloatArray, equity0: float) -> tuple[float, int, int, int]:
    """(depth, peak, trough, recovery) as positions in ``equity``; peak -1 is the starting
    equity, recovery -1 is "not recovered"; depth 0 has trough -1."""
    if not len(equity):
        return 0.0, -1, -1, -1
    peaks = np.maximum.accumulate(np.concatenate([[equity0], equity]))[1:]
    dd = 1.0 - equity / peaks
    trough = int(np.argmax(dd))
    depth = float(dd[trough])
    if depth <= 0:
        return 0.0, -1, -1, -1
    head = np.concatenate([[equity0], equity[: trough + 1]])
    peak = int(np.argmax(head)) - 1
    after = np.nonzero(equity[trough:] >= peaks[trough])[0]
    recovery = trough + int(after[0]) if len(after) else -1
    return depth, peak, trough, recovery


def _entry_order(entry: IntArray, rank: FloatArray, listing: IntArray) -> IntArray:
    """``np.lexsort((listing, rank, entry))``: by entry session, rank, listing (stable). When
    the ranks are whole numbers (a scan's Rank, inf for none) the three keys are packed into
    one integer and sorted at once: rows arrive nearly in that order, which a stable sort
    (timsort) runs through several times faster than lexsort's three passes."""
    if not len(entry):
        return np.zeros(0, dtype=np.int64)
    fin = np.isfinite(rank)
    r = np.where(fin, rank, 0.0)
    if (r == np.floor(r)).all() and (r >= 0).all() and r.max(initial=0) < 2**19 - 1 \
            and listing.min() >= 0 and listing.max() < 2**22 and entry.min() >= 0 \
            and entry.max() < 2**21:
        rk = np.where(fin, r, 2**19 - 1).astype(np.int64)  # inf sorts after every rank
        key = (entry.astype(np.int64) << 41) | (rk << 22) | listing.astype(np.int64)
        return np.argsort(key, kind="stable").astype(np.int64)
    return np.lexsort((listing, rank, entry)).astype(np.int64)


def simulate_portfolio(trades: pd.DataFrame, close: Any, *, initial_equity: float = 100_000.0,
                       risk_fraction: float = 0.01, max_positions: int = 10,
                       max_position_fraction: float | None = None, start: int = 0,
                       sessions: Sequence[Any] | None = None) -> PortfolioResult:
    """Run the equal-risk portfolio over ``simulate_trades`` output (rules in the module
    docstring). ``close`` is the panel the trades came from (for marking); the curve covers
    sessions ``start …`` (trades entered before ``start`` are ``before_start``); ``sessions``
    labels the columns (dates) for the curve's index and the drawdown dates."""
    c = _panel("close", close, None)
    if not (math.isfinite(initial_equity) and initial_equity > 0):
        raise ConfigError("initial_equity", f"must be a positive amount, got {initial_equity!r}")
    if not (0 < risk_fraction <= 1):
        raise ConfigError("risk_fraction", f"must be in (0, 1], e.g. 0.01 for 1 %, "
                          f"got {risk_fraction!r}")
    max_positions = _positive_int("max_positions", max_positions)
    if max_position_fraction is not None and not (max_position_fraction > 0):
        raise ConfigError("max_position_fraction",
                          f"must be > 0 (share of equity per position) or None, "
                          f"got {max_position_fraction!r}")
    n_sessions = c.shape[1]
    if not 0 <= start < n_sessions:
        raise ConfigError("start", f"must be a session index in 0 … {n_sessions - 1}, got {start}")
    if sessions is not None and len(sessions) != n_sessions:
        raise ConfigError("sessions", f"needs one label per panel column ({n_sessions}), "
                          f"got {len(sessions)}")
    if len(trades) and (int(trades["listing"].max()) >= c.shape[0]
                        or int(trades["exit_session"].max()) >= n_sessions):
        raise ConfigError("close", "must be the panel the trades were simulated on (it has "
                          "fewer listings or sessions than the trades refer to)")

    code = _reason_codes(trades["reason"])
    entry_s = trades["entry_session"].to_numpy(np.int64)
    idx = np.nonzero((entry_s >= 0) & (code > NO_ENTRY) & (code < INVALID))[0]
    rank_key = trades["rank"].to_numpy(np.float64)[idx]
    rank_key = np.where(np.isnan(rank_key), np.inf, rank_key)
    order = idx[_entry_order(entry_s[idx], rank_key, trades["listing"].to_numpy(np.int64)[idx])]

    def col(name: str, dtype: Any) -> Any:
        return np.ascontiguousarray(trades[name].to_numpy(dtype)[order])

    # An open trade stays held to the end of the panel: it never frees its slot.
    exit_s = np.where(code[order] == OPEN, n_sessions, col("exit_session", np.int64))
    m = len(order)
    shares = np.zeros(m)
    status = np.zeros(m, np.int8)
    k = n_sessions - start
    equity, cash, invested = np.empty(k), np.empty(k), np.empty(k)
    n_open = np.empty(k, np.int64)
    _portfolio_nb(c, col("listing", np.int64), col("entry_session", np.int64),
                  col("entry_price", np.float64), col("stop", np.float64),
                  np.ascontiguousarray(exit_s), col("exit_price", np.float64), start,
                  float(initial_equity), float(risk_fraction), max_positions,
                  float(max_position_fraction or 0.0), shares, status, equity, cash, invested,
                  n_open)

    all_status = np.full(len(trades), NOT_ENTERED, np.int64)
    all_status[order] = status
    all_shares = np.zeros(len(trades))
    all_shares[order] = shares
    out = trades.copy(deep=False)  # the new columns only (copy-on-write shares the rest)
    out["status"] = pd.Categorical.from_codes(all_status, categories=pd.Index(PORTFOLIO_STATUS))
    out["shares"] = all_shares

    labels = list(range(start, n_sessions)) if sessions is None else list(sessions)[start:]
    peaks = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    curve = pd.DataFrame({"equity": equity, "cash": cash, "invested": invested,
                          "positions": n_open, "drawdown": 1.0 - equity / peaks},
                         index=pd.Index(labels, name="session"))
    depth, peak, trough, recovery = _max_drawdown(equity, initial_equity)

    def label(pos: int) -> Any:
        return None if pos < 0 else labels[pos]

    final = float(equity[-1])
    years = k / SESSIONS_PER_YEAR
    counts = out["status"].value_counts()
    stats = {
        "initial_equity": float(initial_equity),
        "final_equity": final,
        "total_return": final / initial_equity - 1.0,
        "cagr": (final / initial_equity) ** (1.0 / years) - 1.0 if final > 0 else -1.0,
        "max_drawdown": depth,
        "drawdown_peak": label(peak),
        "drawdown_trough": label(trough),
        "drawdown_recovery": label(recovery),
        "exposure": float(np.mean(invested / equity)),
        "max_positions_held": int(n_open.max()),
        "trades_taken": int(counts.get("taken", 0)),
        "trades_skipped": int(len(order) - counts.get("taken", 0)),
        "by_status": {s: int(counts.get(s, 0)) for s in PORTFOLIO_STATUS},
    }
    return PortfolioResult(curve=curve, trades=out, stats=stats)
