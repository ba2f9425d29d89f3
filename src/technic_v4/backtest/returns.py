"""Forward returns of a signal over a ``(listings, sessions)`` panel: pure array code.

Contract
--------
Panel orientation
    2D float64 arrays shaped ``(n_listings, n_sessions)`` on one shared session calendar, oldest
    -> newest, NaN where a listing has no bar.  Prices are total-return adjusted (splits and
    dividends) as of the last session; the replay driver supplies them.  Benchmark rows are 1D
    ``(n_sessions,)``.
Signal timing
    A signal at session ``d`` is known after ``d``'s close.  ``entry="open"`` (the default) buys
    at the NEXT session's open: ``r[d] = close[d+h] / open[d+1] - 1``.  ``entry="close"`` is the
    textbook alternative that assumes a fill at the signal bar's own close:
    ``r[d] = close[d+h] / close[d] - 1`` (alphalens' convention; it is optimistic because nobody
    can trade on a close they have only just seen).
No peek
    ``r[d]`` reads bars ``d .. d+h`` only and is NaN whenever ``d + h`` lies beyond the last
    session of the panel -- even for a listing that was delisted earlier, so the tail of the
    sample is not made of delisted names alone.  Cutting the panel after session ``e`` leaves
    every value with ``d + h <= e`` unchanged.
NaN policy
    ``r[d]`` is NaN when the listing has no bar at ``d`` (it could not have matched), when the
    entry price is missing or not positive (for ``entry="open"``: no bar at ``d+1``, the trade
    could not be entered), or when ``d`` is after the listing's delisting session.  A missing
    bar inside the horizon (a halt) exits at the last close at or before ``d+h`` that is not
    older than the entry bar.
Delistings
    ``delist_session[i]`` is the index of the last session listing ``i`` traded (its delisting
    session), ``-1`` for a listing still trading; ``delist_price[i]`` is its last traded close
    (or whatever cash-out price the driver knows).  A horizon that ends on or after the
    delisting session exits at ``delist_price``: the delisting return, never a silent drop.
Execution
    One ``numba.njit(cache=True, nogil=True)`` pass over the panel per horizon, O(N·T), serial
    over rows like the indicator kernels (callers may run row chunks in threads).
Excess returns
    Arithmetic differences: ``r - benchmark_r`` and ``r - universe_mean`` where the universe
    mean of session ``d`` is the equal-weight mean forward return of every listing with a
    finite forward return at ``d`` (optionally restricted by a universe mask).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np

from technic_v4.errors import ConfigError

Entry = Literal["open", "close"]
DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 21, 63)

__all__ = [
    "DEFAULT_HORIZONS",
    "Entry",
    "ForwardReturns",
    "excess_returns",
    "forward_return_panels",
    "forward_returns",
    "forward_returns_at",
    "universe_mean",
    "universe_mean_at",
]


@numba.njit(cache=True, nogil=True)
def _entry(open_: np.ndarray, close: np.ndarray, i: int, d: int, from_open: bool
           ) -> tuple[float, int]:
    """A signal at session ``d``'s entry price and session: the next open, or d's close."""
    if from_open:
        return open_[i, d + 1], d + 1
    return close[i, d], d


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _forward_nb(open_: np.ndarray, close: np.ndarray, horizon: int, from_open: bool,
                delist_session: np.ndarray, delist_price: np.ndarray,
                out: np.ndarray) -> None:
    n, n_t = close.shape
    exit_px = np.empty(n_t)
    exit_at = np.empty(n_t, dtype=np.int64)
    for i in range(n):
        k = delist_session[i]
        last = np.nan
        last_t = -1
        for t in range(n_t):
            if k >= 0 and t >= k:
                last = delist_price[i]
                last_t = k
            elif np.isfinite(close[i, t]):
                last = close[i, t]
                last_t = t
            exit_px[t] = last
            exit_at[t] = last_t
        for d in range(n_t):
            out[i, d] = np.nan
            e = d + horizon
            if e >= n_t or not np.isfinite(close[i, d]) or (k >= 0 and d > k):
                continue
            entry, entry_t = _entry(open_, close, i, d, from_open)
            if not (np.isfinite(entry) and entry > 0.0) or exit_at[e] < entry_t:
                continue
            out[i, d] = exit_px[e] / entry - 1.0


def _panel(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ConfigError(name, f"expected a (listings, sessions) array, got shape {arr.shape}")
    return arr


def _prices(open_: np.ndarray | None, close: np.ndarray, horizon: int, entry: str,
            as_grid: Callable[[str, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The checked arguments of both forward-return functions: the entry and close grids
    (``as_grid`` converts; the close twice over for entry="close"), ConfigError naming the
    field for a bad horizon, entry or open panel."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError("horizon", f"must be a whole number of sessions >= 1, got {horizon!r}")
    if entry not in ("open", "close"):
        raise ConfigError("entry", f"must be 'open' or 'close', got {entry!r}")
    c = as_grid("close", close)
    if entry == "close":
        return c, c
    if open_ is None:
        raise ConfigError("open", "entry='open' needs the open panel (or use entry='close')")
    o = as_grid("open", open_)
    if o.shape != c.shape:
        raise ConfigError("open", f"shape {o.shape} differs from close {c.shape}")
    return o, c


def forward_returns(open_: np.ndarray | None, close: np.ndarray, horizon: int, *,
                    entry: Entry = "open", delist_session: np.ndarray | None = None,
                    delist_price: np.ndarray | None = None, workers: int = 1) -> np.ndarray:
    """Forward return over ``horizon`` sessions of a signal at every session (see module doc).

    ``open_``/``close`` are ``(N, T)`` (or 1D ``(T,)``, e.g. a benchmark: a 1D result is
    returned); ``open_`` may be None only with ``entry="close"``.  ``workers`` threads split
    the listings (same result).
    """
    one_d = np.ndim(close) == 1
    o, c = _prices(open_, close, horizon, entry, _panel)
    n = c.shape[0]
    ks, kp = _delistings(delist_session, delist_price, n)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be a whole number >= 1, got {workers!r}")
    out = np.empty_like(c)
    step = max(1, -(-n // workers))
    spans = [(lo, min(lo + step, n)) for lo in range(0, n, step)]

    def rows(lo: int, hi: int) -> None:
        _forward_nb(o[lo:hi], c[lo:hi], int(horizon), entry == "open", ks[lo:hi], kp[lo:hi],
                    out[lo:hi])

    if len(spans) < 2:
        rows(0, n)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done in [pool.submit(rows, lo, hi) for lo, hi in spans]:
                done.result()
    return out[0] if one_d else out


@numba.njit(cache=True, nogil=True)
def _column_mean_nb(x: np.ndarray, use: np.ndarray, masked: bool, out: np.ndarray) -> None:
    n, n_t = x.shape
    total = np.zeros(n_t)
    count = np.zeros(n_t, dtype=np.int64)
    for i in range(n):
        for t in range(n_t):
            v = x[i, t]
            if np.isfinite(v) and (not masked or use[i, t]):
                total[t] += v
                count[t] += 1
    for t in range(n_t):
        out[t] = total[t] / count[t] if count[t] > 0 else np.nan


def universe_mean(fwd: np.ndarray, universe: np.ndarray | None = None) -> np.ndarray:
    """Equal-weight mean forward return per session over listings with a finite return
    (and ``universe`` True, if given); NaN for a session with none."""
    x = _panel("fwd", fwd)
    use = (np.ones((1, 1), dtype=np.bool_) if universe is None
           else np.ascontiguousarray(universe, dtype=np.bool_))
    if universe is not None and use.shape != x.shape:
        raise ConfigError("universe", f"shape {use.shape} differs from the returns' {x.shape}")
    out = np.empty(x.shape[1])
    _column_mean_nb(x, use, universe is not None, out)
    return out


def excess_returns(fwd: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``fwd - base`` per session (``base`` is ``(T,)``: a benchmark or universe return)."""
    return fwd - np.asarray(base, dtype=np.float64)[None, :]


@dataclass(frozen=True)
class ForwardReturns:
    """Forward returns at one horizon: ``raw`` ``(N, T)`` and the two ``(T,)`` baselines.

    The excess panels are computed on each access (a fresh ``(N, T)`` array; NaN where either
    side is NaN) so that four horizons do not hold twelve full panels at once.
    """

    horizon: int
    entry: Entry
    raw: np.ndarray
    benchmark: np.ndarray | None
    universe: np.ndarray

    @property
    def over_benchmark(self) -> np.ndarray | None:
        """``raw`` minus the benchmark's forward return of the same session (None without one)."""
        return None if self.benchmark is None else excess_returns(self.raw, self.benchmark)

    @property
    def over_universe(self) -> np.ndarray:
        """``raw`` minus the equal-weight universe mean of the same session."""
        return excess_returns(self.raw, self.universe)


def forward_return_panels(open_: np.ndarray | None, close: np.ndarray,
                          horizons: Iterable[int] = DEFAULT_HORIZONS, *, entry: Entry = "open",
                          delist_session: np.ndarray | None = None,
                          delist_price: np.ndarray | None = None,
                          benchmark_open: np.ndarray | None = None,
                          benchmark_close: np.ndarray | None = None,
                          universe: np.ndarray | None = None,
                          workers: int = 1) -> Mapping[int, ForwardReturns]:
    """Forward returns and excess returns for each horizon, keyed by horizon.

    The benchmark (e.g. SPY's rows) is timed like the listings: with ``entry="open"`` it needs
    ``benchmark_open`` too.  ``universe`` (``(N, T)`` bool) restricts the equal-weight mean.
    """
    hs = list(horizons)
    if not hs or len(set(hs)) != len(hs):
        raise ConfigError("horizons", f"need distinct horizons >= 1, got {hs}")
    if benchmark_close is not None and entry == "open" and benchmark_open is None:
        raise ConfigError("benchmark_open", "entry='open' needs the benchmark's open row too")
    out: dict[int, ForwardReturns] = {}
    for h in hs:
        raw = forward_returns(open_, close, h, entry=entry, delist_session=delist_session,
                              delist_price=delist_price, workers=workers)
        bench = None if benchmark_close is None else forward_returns(
            benchmark_open, np.asarray(benchmark_close).reshape(-1), h, entry=entry)
        uni = universe_mean(raw, universe)
        out[h] = ForwardReturns(horizon=h, entry=entry, raw=raw, benchmark=bench, universe=uni)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _forward_at_nb(open_: np.ndarray, close: np.ndarray, horizon: int, from_open: bool,
                   delist_session: np.ndarray, delist_price: np.ndarray, listing: np.ndarray,
                   session: np.ndarray, out: np.ndarray) -> None:
    n_t = close.shape[1]
    for j in range(len(listing)):
        i = listing[j]
        d = session[j]
        out[j] = np.nan
        k = delist_session[i]
        e = d + horizon
        if e >= n_t or not np.isfinite(close[i, d]) or (k >= 0 and d > k):
            continue
        entry, entry_t = _entry(open_, close, i, d, from_open)
        if not (np.isfinite(entry) and entry > 0.0):
            continue
        if k >= 0 and e >= k:  # the delisting return (exit at the delisting session)
            if k >= entry_t:
                out[j] = delist_price[i] / entry - 1.0
            continue
        s = e  # the last close at or before d + h, not before the entry bar
        while s >= entry_t and not np.isfinite(close[i, s]):
            s -= 1
        if s >= entry_t:
            out[j] = close[i, s] / entry - 1.0


def _grid(name: str, a: np.ndarray) -> np.ndarray:
    """A 2D float64 array in whatever memory order it has (no copy: a session-major array
    passed as ``a.T`` reads cells of one session from neighbouring memory)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(name, f"expected a (listings, sessions) array, got shape {arr.shape}")
    return arr


def forward_returns_at(open_: np.ndarray | None, close: np.ndarray, horizon: int,
                       listing: np.ndarray, session: np.ndarray, *, entry: Entry = "open",
                       delist_session: np.ndarray | None = None,
                       delist_price: np.ndarray | None = None) -> np.ndarray:
    """``forward_returns(...)[listing, session]`` (same rules, same bits) without the
    ``(N, T)`` result: one value per ``(listing[k], session[k])`` cell, e.g. a replay's rows.
    Each cell reads its own bars only (a halt walks back to the last close).  The panels may
    be views in any memory order: for cells grouped by session pass session-major arrays as
    ``a.T`` (no copy is made), so neighbouring cells read neighbouring memory."""
    o, c = _prices(open_, close, horizon, entry, _grid)
    n, n_t = c.shape
    li = np.ascontiguousarray(listing, dtype=np.int64).reshape(-1)
    si = np.ascontiguousarray(session, dtype=np.int64).reshape(-1)
    if li.shape != si.shape:
        raise ConfigError("session", f"one session per listing, got {si.shape} and {li.shape}")
    if len(li) and (li.min() < 0 or li.max() >= n):
        raise ConfigError("listing", f"listings are rows 0 .. {n - 1} of the panel")
    if len(si) and (si.min() < 0 or si.max() >= n_t):
        raise ConfigError("session", f"sessions are columns 0 .. {n_t - 1} of the panel")
    ks, kp = _delistings(delist_session, delist_price, n)
    out = np.empty(len(li))
    _forward_at_nb(o, c, int(horizon), entry == "open", ks, kp, li, si, out)
    return out


def _delistings(delist_session: Any, delist_price: Any, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each listing's delisting session (-1: none) and price, checked: both or neither, one
    value per listing (ConfigError naming ``delist_session``)."""
    if (delist_session is None) != (delist_price is None):
        raise ConfigError("delist_session", "pass delist_session and delist_price together")
    if delist_session is None or delist_price is None:
        return np.full(n, -1, dtype=np.int64), np.full(n, np.nan)
    ks = np.ascontiguousarray(delist_session, dtype=np.int64).reshape(-1)
    kp = np.ascontiguousarray(delist_price, dtype=np.float64).reshape(-1)
    if ks.shape != (n,) or kp.shape != (n,):
        raise ConfigError("delist_session", f"expected {n} values (one per listing), got "
                          f"{ks.shape[0]} sessions and {kp.shape[0]} prices")
    return ks, kp


@numba.njit(cache=True, nogil=True)
def _group_mean_nb(start: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    for t in range(len(start) - 1):
        total = 0.0
        count = 0
        for j in range(start[t], start[t + 1]):
            if np.isfinite(x[j]):
                total += x[j]
                count += 1
        out[t] = total / count if count > 0 else np.nan


def universe_mean_at(start: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """:func:`universe_mean` of returns given at cells grouped by session (session ``t``'s
    are ``fwd[start[t]:start[t+1]]``, listings ascending: the panel version's bits)."""
    s = np.ascontiguousarray(start, dtype=np.int64)
    x = np.ascontiguousarray(fwd, dtype=np.float64)
    if s.ndim != 1 or len(s) < 1 or s[0] != 0 or s[-1] != len(x) or (np.diff(s) < 0).any():
        raise ConfigError("start", "session offsets must rise from 0 to the number of values")
    out = np.empty(len(s) - 1)
    _group_mean_nb(s, x, out)
    return out
