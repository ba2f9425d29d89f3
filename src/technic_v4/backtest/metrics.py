"""Factor and screen statistics over ``(listings, sessions)`` panels: pure array code.

Definitions follow alphalens-reloaded (``alphalens/performance.py`` and ``utils.py``); every
place this module differs says so in the function's docstring.  In short:

* IC (``factor_information_coefficient``): per session, Spearman rank correlation of score and
  forward return over listings where both are finite, average ranks for ties (as
  ``scipy.stats.spearmanr``).  Fewer than 2 pairs, or a constant side, gives NaN.
* Quantiles (``quantize_factor``): per session, ``pd.qcut(ranks, Q, labels=False) + 1`` on the
  score's average ranks.
* Mean return by quantile (``mean_return_by_quantile``, ``demeaned=True`` by default): per
  session the mean (demeaned) forward return of each bucket; over sessions the mean of those
  means with standard error ``std / sqrt(n_sessions)``.
* Turnover (``quantile_turnover``): share of the names in a bucket that were not in it
  ``period`` sessions earlier.
* Rank autocorrelation (``factor_rank_autocorrelation``): Pearson correlation of the average
  ranks at ``d`` and ``d - period`` over listings ranked at both.

Where we differ from alphalens, globally: alphalens first drops every (date, asset) row whose
factor OR ANY horizon's forward return is NaN (``get_clean_factor_and_forward_returns``), then
quantizes.  Here buckets are formed over every listing with a finite score at that session, and
each statistic then uses the rows whose return for THAT horizon is finite.  So a listing that
will delist or whose long horizon runs off the data still counts in its bucket: membership uses
no future information, and turnover does not depend on the horizons asked for.

Contract
--------
Panels are float64 ``(n_listings, n_sessions)`` (NaN = no value); per-session results are 1D
``(n_sessions,)``; "finite" means not NaN and not ±inf.  Nothing here prints or does I/O.
t-statistics are ``mean / (std / sqrt(n))`` with ``ddof=1`` (``scipy.stats.ttest_1samp``, which
alphalens uses for the IC); with overlapping horizons (h > 1 evaluated every session) the
per-session values are autocorrelated and these t-stats overstate significance -- sample every
h-th session (``--every h``) for an honest one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from technic_v4.errors import ConfigError

__all__ = [
    "CellScore",
    "Cells",
    "ICSummary",
    "QuantileReturns",
    "ScorePanel",
    "ScreenStats",
    "ic_decay",
    "ic_table",
    "information_coefficient",
    "information_coefficient_at",
    "mean_return_by_quantile",
    "mean_return_by_quantile_at",
    "prepare_score",
    "quantile_turnover",
    "quantile_turnover_at",
    "quantize",
    "quantize_at",
    "rank_autocorrelation",
    "rank_cells",
    "screen_stats",
    "screen_stats_at",
    "summarize_ic",
    "t_stat",
]


# ---------------------------------------------------------------- compiled cores (session-major)

@numba.njit(cache=True, nogil=True)
def _walk_ties(idx: np.ndarray, vals: np.ndarray, ranks: np.ndarray) -> None:
    """Average ranks (1-based) of ``vals[idx]``, ``idx`` sorting them ascending."""
    m = len(idx)
    s = 0
    while s < m:
        v = vals[idx[s]]
        e = s + 1
        while e < m and vals[idx[e]] == v:
            e += 1
        r = (s + e + 1) / 2.0  # mean of the ranks s+1 .. e
        for k in range(s, e):
            ranks[idx[k]] = r
        s = e


@numba.njit(cache=True, nogil=True)
def _rank_walk(order: np.ndarray, vals: np.ndarray, valid: np.ndarray, ranks: np.ndarray,
               idx: np.ndarray) -> int:
    """Average ranks (1-based) of ``vals[valid]`` into ``ranks``; ``order`` sorts ``vals``
    ascending (any position for invalid entries).  Returns the number ranked."""
    m = 0
    for j in range(order.shape[0]):
        i = order[j]
        if valid[i]:
            idx[m] = i
            m += 1
    _walk_ties(idx[:m], vals, ranks)
    return m


@numba.njit(cache=True, nogil=True)
def _ranks_nb(order: np.ndarray, vals: np.ndarray, out: np.ndarray) -> None:
    n_t, n = vals.shape
    valid = np.empty(n, dtype=np.bool_)
    idx = np.empty(n, dtype=np.int64)
    for t in range(n_t):
        for i in range(n):
            valid[i] = np.isfinite(vals[t, i])
            out[t, i] = np.nan
        _rank_walk(order[t], vals[t], valid, out[t], idx)


@numba.njit(cache=True, nogil=True)
def _rank_pearson(rx: np.ndarray, ry: np.ndarray, valid: np.ndarray, n: int, m: int) -> float:
    """Pearson's correlation of the ranks ``rx``, ``ry`` (1 .. m, mean (m + 1) / 2) over the
    first ``n`` cells where ``valid``: Spearman's IC (NaN when either side is constant)."""
    mean = (m + 1) / 2.0
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for k in range(n):
        if valid[k]:
            dx = rx[k] - mean
            dy = ry[k] - mean
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
    if sxx > 0.0 and syy > 0.0:
        return float(sxy / np.sqrt(sxx * syy))
    return np.nan


@numba.njit(cache=True, nogil=True)
def _spearman_nb(xo: np.ndarray, xv: np.ndarray, yo: np.ndarray, yv: np.ndarray,
                 out: np.ndarray) -> None:
    n_t, n = xv.shape
    valid = np.empty(n, dtype=np.bool_)
    idx = np.empty(n, dtype=np.int64)
    rx = np.empty(n)
    ry = np.empty(n)
    for t in range(n_t):
        m = 0
        for i in range(n):
            ok = np.isfinite(xv[t, i]) and np.isfinite(yv[t, i])
            valid[i] = ok
            m += ok
        out[t] = np.nan
        if m < 2:
            continue
        _rank_walk(xo[t], xv[t], valid, rx, idx)
        _rank_walk(yo[t], yv[t], valid, ry, idx)
        out[t] = _rank_pearson(rx, ry, valid, n, m)


@numba.njit(cache=True, nogil=True)
def _quantize_nb(ranks: np.ndarray, row: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    # Right-closed bins with the lowest edge included, as pd.qcut: bucket = 1 + the number of
    # inner edges strictly below the rank.  ``edges[row[t]]`` holds the inner edges for the
    # session's count; row -1 means "no buckets".
    n_t, n = ranks.shape
    for t in range(n_t):
        k = row[t]
        for i in range(n):
            r = ranks[t, i]
            if k < 0 or not np.isfinite(r):
                out[t, i] = 0
            else:
                out[t, i] = 1 + np.searchsorted(edges[k], r, side="left")


@numba.njit(cache=True, nogil=True)
def _bucket_means_nb(buckets: np.ndarray, y: np.ndarray, q: int, demeaned: bool,
                     means: np.ndarray, counts: np.ndarray) -> None:
    n, n_t = y.shape
    tot = np.zeros(n_t)
    cnt = np.zeros(n_t, dtype=np.int64)
    sums = np.zeros((n_t, q))
    counts[:, :] = 0
    for i in range(n):
        for t in range(n_t):
            b = buckets[i, t]
            v = y[i, t]
            if b > 0 and np.isfinite(v):
                tot[t] += v
                cnt[t] += 1
                sums[t, b - 1] += v
                counts[t, b - 1] += 1
    for t in range(n_t):
        base = tot[t] / cnt[t] if (demeaned and cnt[t] > 0) else 0.0
        for b in range(q):
            c = counts[t, b]
            means[t, b] = sums[t, b] / c - base if c > 0 else np.nan


@numba.njit(cache=True, nogil=True)
def _rank_autocorr_nb(r: np.ndarray, period: int, out: np.ndarray) -> None:
    n_t, n = r.shape
    out[:] = np.nan
    for t in range(period, n_t):
        a = r[t]
        b = r[t - period]
        m = 0
        sa = 0.0
        sb = 0.0
        for i in range(n):
            if np.isfinite(a[i]) and np.isfinite(b[i]):
                m += 1
                sa += a[i]
                sb += b[i]
        if m < 2:
            continue
        am = sa / m
        bm = sb / m
        sab = 0.0
        saa = 0.0
        sbb = 0.0
        for i in range(n):
            if np.isfinite(a[i]) and np.isfinite(b[i]):
                da = a[i] - am
                db = b[i] - bm
                sab += da * db
                saa += da * da
                sbb += db * db
        if saa > 0.0 and sbb > 0.0:
            out[t] = sab / np.sqrt(saa * sbb)


# ---------------------------------------------------------------- helpers

def t_stat(values: np.ndarray) -> float:
    """One-sample t-statistic of the finite values against 0 (NaN for < 2 or zero spread)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan")
    sd = float(v.std(ddof=1))
    return float(v.mean() / (sd / np.sqrt(v.size))) if sd > 0 else float("nan")


def _panel(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(name, f"expected a (listings, sessions) array, got shape {arr.shape}")
    return arr


# Sessions per block when going session-major: the temporaries of one block (~ 256 x 6,000 x 8
# bytes) stay under glibc's mmap threshold, so they are recycled instead of page-faulted anew.
_BLOCK = 256


def _run_blocks(fn: Callable[[int, int], None], n_t: int, workers: int) -> None:
    """``fn(lo, hi)`` over session blocks; blocks write disjoint slices, so ``workers`` > 1
    threads give the same result (the sorts and kernels release the GIL)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be a whole number >= 1, got {workers!r}")
    spans = [(lo, min(lo + _BLOCK, n_t)) for lo in range(0, n_t, _BLOCK)]
    if workers == 1 or len(spans) < 2:
        for lo, hi in spans:
            fn(lo, hi)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done in [pool.submit(fn, lo, hi) for lo, hi in spans]:
            done.result()


def _session_major(a: np.ndarray, lo: int, hi: int,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sessions ``lo:hi`` of an (N, T) panel as a (hi-lo, N) copy with every non-finite value
    set to +inf, and per session the listing order sorting it.  +inf instead of NaN: numpy's
    vectorised sort is ~10x faster without NaN, and the kernels treat every non-finite entry
    as missing anyway."""
    keys = np.empty((hi - lo, a.shape[0])) if out is None else out
    keys[...] = a[:, lo:hi].T
    np.nan_to_num(keys, copy=False, nan=np.inf, posinf=np.inf, neginf=np.inf)
    return keys, np.argsort(keys, axis=1)


@dataclass(frozen=True)
class ScorePanel:
    """A score panel sorted once per session, reused by IC, quantiles and autocorrelation.

    ``ranks`` is ``(N, T)``: average rank (1-based) among the listings with a finite score at
    that session, NaN elsewhere; ``count`` is how many were ranked per session.
    """

    values: np.ndarray
    count: np.ndarray
    _values_t: np.ndarray
    _order_t: np.ndarray
    _ranks_t: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    @property
    def ranks(self) -> np.ndarray:
        """``(N, T)`` average ranks (a transposed view)."""
        return self._ranks_t.T


def prepare_score(score: np.ndarray | ScorePanel, *, workers: int = 1) -> ScorePanel:
    """Sort a ``(N, T)`` score panel per session (idempotent on a ``ScorePanel``), in blocks
    of sessions on ``workers`` threads."""
    if isinstance(score, ScorePanel):
        return score
    s = _panel("score", score)
    n, n_t = s.shape
    vt = np.empty((n_t, n))
    order = np.empty((n_t, n), dtype=np.intp)
    ranks_t = np.empty((n_t, n))

    def block(lo: int, hi: int) -> None:
        _, order[lo:hi] = _session_major(s, lo, hi, vt[lo:hi])
        _ranks_nb(order[lo:hi], vt[lo:hi], ranks_t[lo:hi])

    _run_blocks(block, n_t, workers)
    count = np.isfinite(ranks_t).sum(axis=1)
    return ScorePanel(values=s, count=count, _values_t=vt, _order_t=order, _ranks_t=ranks_t)


def _check_shape(name: str, a: np.ndarray, shape: tuple[int, int]) -> None:
    if a.shape != shape:
        raise ConfigError(name, f"shape {a.shape} differs from the score's {shape}")


# ---------------------------------------------------------------- information coefficient

def information_coefficient(score: np.ndarray | ScorePanel, fwd: np.ndarray, *,
                            workers: int = 1) -> np.ndarray:
    """Per-session Spearman rank IC between ``score`` and forward returns ``fwd`` (``(T,)``).

    Same as alphalens ``factor_information_coefficient`` (``scipy.stats.spearmanr`` per date)
    except the rows used: alphalens drops a row if any horizon's return is missing; here a
    session's IC uses every listing with a finite score and a finite return at this horizon.
    """
    sp = prepare_score(score, workers=workers)
    y = _panel("fwd", fwd)
    _check_shape("fwd", y, sp.shape)
    out = np.empty(y.shape[1])

    def block(lo: int, hi: int) -> None:
        yt, yo = _session_major(y, lo, hi)
        _spearman_nb(sp._order_t[lo:hi], sp._values_t[lo:hi], yo, yt, out[lo:hi])

    _run_blocks(block, y.shape[1], workers)
    return out


@dataclass(frozen=True)
class ICSummary:
    """Summary of a per-session IC series (alphalens' ``plotting.plot_information_table``):
    mean, std (ddof=1), risk-adjusted IC ``mean / std``, t-stat, sessions with an IC."""

    mean: float
    std: float
    ir: float
    t_stat: float
    n_sessions: int


def summarize_ic(ic: np.ndarray) -> ICSummary:
    """Mean, std, IR and t-stat of the finite values of a per-session IC series."""
    v = np.asarray(ic, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    std = float(v.std(ddof=1)) if n > 1 else float("nan")
    ir = mean / std if n > 1 and std > 0 else float("nan")
    return ICSummary(mean=mean, std=std, ir=ir, t_stat=t_stat(v), n_sessions=n)


def ic_decay(score: np.ndarray | ScorePanel, fwd_by_horizon: Mapping[int, np.ndarray], *,
             workers: int = 1) -> pd.DataFrame:
    """IC summary per horizon: a DataFrame indexed by ``horizon`` with columns ``mean``,
    ``std``, ``ir``, ``t_stat``, ``n_sessions`` (the score is sorted once)."""
    sp = prepare_score(score, workers=workers)
    return ic_table({h: information_coefficient(sp, f, workers=workers)
                     for h, f in fwd_by_horizon.items()})


def ic_table(ic_by_horizon: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """:func:`ic_decay`'s frame from IC series already computed (one per horizon)."""
    rows = {h: summarize_ic(v).__dict__ for h, v in sorted(ic_by_horizon.items())}
    frame = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["mean", "std", "ir", "t_stat", "n_sessions"])
    frame.index.name = "horizon"
    return frame


# ---------------------------------------------------------------- quantiles

def quantize(score: np.ndarray | ScorePanel, quantiles: int = 5) -> np.ndarray:
    """Per-session quantile bucket 1..Q of each listing's score, 0 where it has none (int16).

    Equals ``pd.qcut(score.rank(), Q, labels=False) + 1`` per session, bit for bit.  alphalens
    ``quantize_factor`` qcuts the raw scores: for distinct scores that is the same buckets,
    except where a bin edge falls exactly on a score and float rounding of the interpolated
    edge decides.  With ties pandas qcut raises on duplicate bin edges (alphalens then drops
    the date); here tied scores share the bucket of their average rank, so the bucket never
    depends on listing order.  A session with fewer
    than 2 scores gets no buckets (qcut's edges would all coincide).  With n < Q some buckets
    are empty, as with qcut.
    """
    if isinstance(quantiles, bool) or not isinstance(quantiles, int) or not 2 <= quantiles <= 1000:
        raise ConfigError("quantiles", f"must be a whole number from 2 to 1000, got {quantiles!r}")
    sp = prepare_score(score)
    if sp.count.size == 0:
        return np.zeros(sp.shape, dtype=np.int16)
    sizes, row = np.unique(sp.count, return_inverse=True)
    row = np.where(sp.count >= 2, row, -1).astype(np.int64)
    edges = np.vstack([_qcut_inner_edges(int(n), quantiles) for n in sizes])
    out = np.empty(sp._ranks_t.shape, dtype=np.int16)
    _quantize_nb(sp._ranks_t, row, edges, out)
    return np.ascontiguousarray(out.T)


@functools.lru_cache(maxsize=1 << 16)
def _qcut_inner_edges(n: int, quantiles: int) -> np.ndarray:
    """The inner bin edges ``pd.qcut(ranks, Q)`` uses for the ranks 1..n, to the last bit:
    pandas nudges its ``linspace`` grid up with ``nextafter`` where ``Q·q`` is not a whole
    number, then takes numpy's linear quantiles (``tests/backtest`` checks against pandas).
    Cached: a replay quantizes many sessions and scores over the same listing counts."""
    if n < 2:
        edges = np.full(quantiles - 1, np.nan)
    else:
        grid = np.linspace(0.0, 1.0, quantiles + 1)
        np.putmask(grid, quantiles * grid != np.arange(quantiles + 1), np.nextafter(grid, 1.0))
        edges = np.quantile(np.arange(1, n + 1, dtype=np.float64), grid, method="linear")[1:-1]
    edges = np.ascontiguousarray(edges)
    edges.flags.writeable = False
    return edges


@dataclass(frozen=True)
class QuantileReturns:
    """Mean forward return by quantile (index 0 is bucket 1, the lowest scores).

    ``by_session``/``count`` are ``(T, Q)`` (NaN/0 for an empty bucket); ``mean``/``std_error``
    are ``(Q,)`` over sessions; ``spread`` is the per-session top-minus-bottom series with its
    mean, std, t-stat and the number of sessions where both buckets had returns.
    """

    quantiles: int
    demeaned: bool
    by_session: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    std_error: np.ndarray
    spread: np.ndarray
    spread_mean: float
    spread_std: float
    spread_t_stat: float
    spread_sessions: int

    def table(self) -> pd.DataFrame:
        """``mean``, ``std_error`` and ``sessions`` per quantile 1..Q as a DataFrame."""
        sessions = np.isfinite(self.by_session).sum(axis=0)
        return pd.DataFrame({"mean": self.mean, "std_error": self.std_error,
                             "sessions": sessions},
                            index=pd.RangeIndex(1, self.quantiles + 1, name="quantile"))


def mean_return_by_quantile(buckets: np.ndarray, fwd: np.ndarray, quantiles: int, *,
                            demeaned: bool = True) -> QuantileReturns:
    """Mean (demeaned) forward return per quantile, per session and over sessions.

    Follows alphalens ``mean_return_by_quantile`` (``by_date`` gives ``by_session``; the
    overall value is the mean over sessions of the per-session bucket means, std error
    ``std(ddof=1) / sqrt(n)``).  Demeaning subtracts, per session, the mean return of every
    listing with a bucket and a finite return.  The spread t-stat is computed from the
    per-session spread series, where alphalens ``compute_mean_returns_spread`` combines the two
    buckets' standard errors as ``sqrt(se_top² + se_bottom²)`` (which ignores their covariance).
    """
    y = np.ascontiguousarray(_panel("fwd", fwd))
    b = np.ascontiguousarray(buckets, dtype=np.int16)
    _check_shape("buckets", b, (int(y.shape[0]), int(y.shape[1])))
    if int(b.max(initial=0)) > quantiles:
        raise ConfigError("quantiles", f"buckets go up to {int(b.max())}, more than {quantiles}")
    n_t = y.shape[1]
    means = np.empty((n_t, quantiles))
    counts = np.empty((n_t, quantiles), dtype=np.int64)
    _bucket_means_nb(b, y, quantiles, demeaned, means, counts)
    return _quantile_returns(means, counts, quantiles, demeaned)


def _quantile_returns(means: np.ndarray, counts: np.ndarray, quantiles: int, demeaned: bool
                      ) -> QuantileReturns:
    """Over sessions: the per-session bucket means ``(T, Q)`` summarised."""
    n_q = np.isfinite(means).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_q > 0, np.nansum(means, axis=0) / np.maximum(n_q, 1), np.nan)
        dev = np.where(np.isfinite(means), means - mean[None, :], 0.0)
        std = np.where(n_q > 1, np.sqrt((dev ** 2).sum(axis=0) / np.maximum(n_q - 1, 1)), np.nan)
        std_error = std / np.sqrt(n_q)
    spread = means[:, -1] - means[:, 0]
    fin = spread[np.isfinite(spread)]
    return QuantileReturns(
        quantiles=quantiles, demeaned=demeaned, by_session=means, count=counts, mean=mean,
        std_error=std_error, spread=spread,
        spread_mean=float(fin.mean()) if fin.size else float("nan"),
        spread_std=float(fin.std(ddof=1)) if fin.size > 1 else float("nan"),
        spread_t_stat=t_stat(fin), spread_sessions=int(fin.size))


def quantile_turnover(buckets: np.ndarray, quantile: int, period: int = 1) -> np.ndarray:
    """Share of the names in ``quantile`` at session d that were not in it at ``d - period``.

    alphalens ``quantile_turnover``; NaN for the first ``period`` sessions and where either
    session has no name in the bucket (alphalens leaves such dates out).
    """
    if period < 1:
        raise ConfigError("period", f"must be >= 1 session, got {period}")
    top = np.asarray(buckets) == quantile
    n_t = top.shape[1]
    out = np.full(n_t, np.nan)
    if n_t <= period:
        return out
    now, before = top[:, period:], top[:, :-period]
    size_now = now.sum(axis=0)
    size_before = before.sum(axis=0)
    new = (now & ~before).sum(axis=0)
    ok = (size_now > 0) & (size_before > 0)
    out[period:] = np.where(ok, new / np.maximum(size_now, 1), np.nan)
    return out


def rank_autocorrelation(score: np.ndarray | ScorePanel, period: int = 1) -> np.ndarray:
    """Pearson correlation of per-session average ranks at d and ``d - period`` over the
    listings ranked at both (alphalens ``factor_rank_autocorrelation``, whose ranks are over
    its cleaned rows; here over every finite score).  NaN with < 2 common listings."""
    if period < 1:
        raise ConfigError("period", f"must be >= 1 session, got {period}")
    r = prepare_score(score)._ranks_t
    out = np.empty(r.shape[0])
    _rank_autocorr_nb(r, int(period), out)
    return out


# ---------------------------------------------------------------- boolean screens

@dataclass(frozen=True)
class ScreenStats:
    """Outcome of a boolean screen over one return panel (raw or excess).

    Per session ``(T,)``: ``count`` of matches with a finite return, ``hit_rate`` (share > 0)
    and ``mean`` (NaN for sessions without one).  Over all (session, match) pairs: ``n``,
    ``hit_rate``, ``mean``, ``median``, ``std`` (ddof=1), ``t_stat``; ``session_t_stat`` is the
    t-stat of the per-session means (each session weighs the same, robust to the
    cross-sectional correlation of one day's matches).
    """

    count: np.ndarray
    hit_rate_by_session: np.ndarray
    mean_by_session: np.ndarray
    n: int
    hit_rate: float
    mean: float
    median: float
    std: float
    t_stat: float
    session_t_stat: float


def screen_stats(matched: np.ndarray, returns: np.ndarray) -> ScreenStats:
    """Hit rate, mean, median and t-stat of a screen's forward (or excess) returns.

    ``matched`` is ``(N, T)`` bool (or float with NaN meaning not matched); pairs whose return
    is not finite (horizon past the data, no entry bar) are left out.  The same as
    :func:`screen_stats_at` over the matched cells in listing-major order.
    """
    y = _panel("returns", returns)
    m = np.asarray(matched)
    if m.dtype != np.bool_:
        m = np.nan_to_num(m.astype(np.float64), nan=0.0) != 0.0
    _check_shape("matched", m, (int(y.shape[0]), int(y.shape[1])))
    i, t = np.nonzero(m)
    return screen_stats_at(t, y[i, t], int(y.shape[1]))


def screen_stats_at(session: np.ndarray, returns: np.ndarray, n_sessions: int) -> ScreenStats:
    """:func:`screen_stats` of a screen given as its rows: each row's session (0 ..
    ``n_sessions`` - 1) and return (non-finite ones are left out).  Sums run in row order:
    rows in listing-major order give the panel version's numbers bit for bit."""
    s = np.ascontiguousarray(session, dtype=np.int64)
    y = np.ascontiguousarray(returns, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1:
        raise ConfigError("session", f"one session per return, got {s.shape} and {y.shape}")
    if len(s) and (s.min() < 0 or s.max() >= n_sessions):
        raise ConfigError("session", f"sessions are 0 .. {n_sessions - 1}")
    count = np.zeros(n_sessions, dtype=np.int64)
    wins = np.zeros(n_sessions, dtype=np.int64)
    total = np.zeros(n_sessions)
    vals = np.empty(len(y))
    n = _screen_nb(s, y, count, wins, total, vals)
    vals = vals[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = np.where(count > 0, wins / np.maximum(count, 1), np.nan)
        mean_s = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return ScreenStats(
        count=count, hit_rate_by_session=hit, mean_by_session=mean_s, n=n,
        hit_rate=float(np.count_nonzero(vals > 0) / n) if n else float("nan"),
        mean=float(vals.mean()) if n else float("nan"),
        median=float(np.median(vals)) if n else float("nan"),
        std=float(vals.std(ddof=1)) if n > 1 else float("nan"),
        t_stat=t_stat(vals), session_t_stat=t_stat(mean_s))


@numba.njit(cache=True, nogil=True)
def _screen_nb(s: np.ndarray, y: np.ndarray, count: np.ndarray, wins: np.ndarray,
               total: np.ndarray, vals: np.ndarray) -> int:
    k = 0
    for j in range(len(y)):
        v = y[j]
        if np.isfinite(v):
            t = s[j]
            count[t] += 1
            wins[t] += v > 0.0
            total[t] += v
            vals[k] = v
            k += 1
    return k


# ---------------------------------------------------------------- cells: a replay's rows
#
# The same statistics over the cells a replay has rows for (its universe or its matches),
# without (N, T) panels: a score panel of 6,000 listings x 5,000 sessions is 240 MB per array,
# while a replay scores ~half of those cells.  Rows are grouped by session, listings ascending
# inside a session: every sum then runs in the panel kernels' order, so each statistic equals
# its panel version bit for bit (tests/backtest/test_metrics.py compares them).

@dataclass(frozen=True)
class Cells:
    """``(listing, session)`` cells of a ``(n_listings, n_sessions)`` panel, session-major
    (listings ascending within a session); session ``t``'s rows are ``start[t]:start[t+1]``."""

    listing: np.ndarray  # (P,) int64
    session: np.ndarray  # (P,) int64, ascending
    start: np.ndarray  # (n_sessions + 1,) int64
    n_listings: int

    @property
    def n_sessions(self) -> int:
        return len(self.start) - 1

    @classmethod
    def of_rows(cls, listing: np.ndarray, session: np.ndarray, n_listings: int,
                n_sessions: int) -> tuple[Cells, np.ndarray]:
        """The cells of rows ``(listing[k], session[k])`` and ``order``: cell ``j`` is row
        ``order[j]`` (rows already session-major are not moved).  ConfigError for a cell
        outside the panel or given twice."""
        li = np.asarray(listing, dtype=np.int64).reshape(-1)
        si = np.asarray(session, dtype=np.int64).reshape(-1)
        if li.shape != si.shape:
            raise ConfigError("session", f"one session per listing, got {si.shape} and "
                              f"{li.shape}")
        if len(li) and (li.min() < 0 or li.max() >= n_listings):
            raise ConfigError("listing", f"listings are 0 .. {n_listings - 1}")
        if len(si) and (si.min() < 0 or si.max() >= n_sessions):
            raise ConfigError("session", f"sessions are 0 .. {n_sessions - 1}")
        if len(si) > 1 and bool((si[1:] < si[:-1]).any()):
            order = np.argsort(si, kind="stable").astype(np.int64)
            li, si = li[order], si[order]
        else:
            order = np.arange(len(si), dtype=np.int64)
        start = np.searchsorted(si, np.arange(n_sessions + 1)).astype(np.int64)
        # Listings ascending within each session (a frame sorted by symbol or by rank).
        within = _segment_argsort(start, li)
        if not np.array_equal(within, np.arange(len(li))):
            order, li = order[within], li[within]
        if len(li) > 1 and bool(((li[1:] == li[:-1]) & (si[1:] == si[:-1])).any()):
            raise ConfigError("listing", "a (listing, session) cell is given twice")
        return cls(np.ascontiguousarray(li), np.ascontiguousarray(si), start,
                   int(n_listings)), order

    @classmethod
    def of_mask(cls, mask: np.ndarray) -> Cells:
        """The True cells of an ``(N, T)`` bool panel."""
        m = np.asarray(mask, dtype=np.bool_)
        t, i = np.nonzero(m.T)
        start = np.searchsorted(t, np.arange(m.shape[1] + 1)).astype(np.int64)
        return cls(i.astype(np.int64), t.astype(np.int64), start, int(m.shape[0]))

    def take(self, panel: np.ndarray) -> np.ndarray:
        """The values of an ``(N, T)`` panel at the cells."""
        return np.ascontiguousarray(np.asarray(panel)[self.listing, self.session],
                                    dtype=np.float64)


@dataclass(frozen=True)
class CellScore:
    """A score at the cells, ranked once per session (reused by IC and quantiles):
    ``ranks`` average ranks (1-based) among the session's finite scores, NaN elsewhere;
    ``order[start[t] : start[t] + count[t]]`` the cells of session t with a finite score,
    by ascending score."""

    cells: Cells
    values: np.ndarray
    ranks: np.ndarray
    order: np.ndarray
    count: np.ndarray


def _segment_argsort(start: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions sorting ``values`` ascending within each segment ``start[t]:start[t+1]``
    (NaN and +inf last, in any order).  One NumPy sort per segment: NumPy's vectorised sorts are several times
    faster than a compiled loop's on the few thousand values of a session."""
    out = np.empty(len(values), dtype=np.int64)
    state = np.empty(len(start) - 1, dtype=np.int8)
    _segments_nb(start, values, out, state)  # sorted segments: their positions in place
    for t in np.flatnonzero(state).tolist():
        a, b = int(start[t]), int(start[t + 1])
        seg = values[a:b]
        if state[t] == 2:
            # NaN as +inf: NumPy's SIMD sort gives up on NaN (5x slower); both sort last,
            # and every caller skips what is not finite.
            seg = np.where(np.isnan(seg), np.inf, seg)
        srt = np.argsort(seg)
        srt += a
        out[a:b] = srt
    return out


@numba.njit(cache=True, nogil=True)
def _segments_nb(start: np.ndarray, values: np.ndarray, out: np.ndarray, state: np.ndarray
                 ) -> None:
    """Per segment: 0 sorted (``out`` gets its positions), 1 to sort, 2 to sort with NaN."""
    for t in range(len(start) - 1):
        state[t] = 0
        for k in range(start[t], start[t + 1]):
            v = values[k]
            if v != v:
                state[t] = 2
                break
            if k > start[t] and not values[k - 1] <= v:
                state[t] = 1
        if state[t] == 0:
            for k in range(start[t], start[t + 1]):
                out[k] = k


@numba.njit(cache=True, nogil=True)
def _cell_ranks_nb(start: np.ndarray, x: np.ndarray, srt: np.ndarray, ranks: np.ndarray,
                   order: np.ndarray, count: np.ndarray) -> None:
    ranks[:] = np.nan
    for t in range(len(start) - 1):
        a = start[t]
        m = 0
        for j in range(a, start[t + 1]):
            k = srt[j]
            if np.isfinite(x[k]):
                order[a + m] = k
                m += 1
        count[t] = m
        _walk_ties(order[a:a + m], x, ranks)


@numba.njit(cache=True, nogil=True)
def _cell_spearman_nb(start: np.ndarray, xorder: np.ndarray, count: np.ndarray,
                      x: np.ndarray, yorder: np.ndarray, y: np.ndarray, out: np.ndarray
                      ) -> None:
    n = 0  # scratch for the largest session only (positions local to the session)
    for t in range(len(start) - 1):
        n = max(n, start[t + 1] - start[t])
    rx = np.empty(n)
    ry = np.empty(n)
    valid = np.empty(n, dtype=np.bool_)
    xi = np.empty(n, dtype=np.int64)
    yi = np.empty(n, dtype=np.int64)
    for t in range(len(start) - 1):
        a = start[t]
        b = start[t + 1]
        out[t] = np.nan
        m = 0
        for k in range(a, b):
            ok = np.isfinite(x[k]) and np.isfinite(y[k])
            valid[k - a] = ok
            m += ok
        if m < 2:
            continue
        j = 0
        for q in range(a, b):
            k = yorder[q] - a
            if valid[k]:
                yi[j] = k
                j += 1
        _walk_ties(yi[:m], y[a:b], ry)
        j = 0
        for q in range(a, a + count[t]):
            k = xorder[q] - a
            if valid[k]:
                xi[j] = k
                j += 1
        _walk_ties(xi[:m], x[a:b], rx)
        out[t] = _rank_pearson(rx, ry, valid, b - a, m)


@numba.njit(cache=True, nogil=True)
def _cell_quantize_nb(start: np.ndarray, ranks: np.ndarray, row: np.ndarray, edges: np.ndarray,
                      out: np.ndarray) -> None:
    for t in range(len(start) - 1):
        k = row[t]
        for j in range(start[t], start[t + 1]):
            r = ranks[j]
            if k < 0 or not np.isfinite(r):
                out[j] = 0
            else:
                out[j] = 1 + np.searchsorted(edges[k], r, side="left")


@numba.njit(cache=True, nogil=True)
def _cell_bucket_means_nb(start: np.ndarray, buckets: np.ndarray, y: np.ndarray, q: int,
                          demeaned: bool, means: np.ndarray, counts: np.ndarray) -> None:
    sums = np.zeros(q)
    for t in range(len(start) - 1):
        tot = 0.0
        cnt = 0
        sums[:] = 0.0
        counts[t, :] = 0
        for j in range(start[t], start[t + 1]):
            b = buckets[j]
            v = y[j]
            if b > 0 and np.isfinite(v):
                tot += v
                cnt += 1
                sums[b - 1] += v
                counts[t, b - 1] += 1
        base = tot / cnt if (demeaned and cnt > 0) else 0.0
        for b in range(q):
            c = counts[t, b]
            means[t, b] = sums[b] / c - base if c > 0 else np.nan


@numba.njit(cache=True, nogil=True)
def _cell_turnover_nb(start: np.ndarray, listing: np.ndarray, buckets: np.ndarray,
                      quantile: int, n_listings: int, out: np.ndarray) -> None:
    seen = np.full(n_listings, -2, dtype=np.int64)  # the last session each was in the bucket
    size_before = 0
    for t in range(len(start) - 1):
        size = 0
        new = 0
        for j in range(start[t], start[t + 1]):
            if buckets[j] == quantile:
                size += 1
                if seen[listing[j]] != t - 1:
                    new += 1
        for j in range(start[t], start[t + 1]):
            if buckets[j] == quantile:
                seen[listing[j]] = t
        out[t] = new / size if t >= 1 and size > 0 and size_before > 0 else np.nan
        size_before = size


def rank_cells(cells: Cells, score: np.ndarray) -> CellScore:
    """:func:`prepare_score` for a score given at the cells (``(P,)`` in cell order)."""
    x = np.ascontiguousarray(score, dtype=np.float64)
    if x.shape != cells.listing.shape:
        raise ConfigError("score", f"one value per cell ({len(cells.listing)}), got {x.shape}")
    ranks = np.empty(len(x))
    order = np.empty(len(x), dtype=np.int64)
    count = np.empty(cells.n_sessions, dtype=np.int64)
    _cell_ranks_nb(cells.start, x, _segment_argsort(cells.start, x), ranks, order, count)
    return CellScore(cells, x, ranks, order, count)


def _cell_values(name: str, cs: CellScore, a: np.ndarray) -> np.ndarray:
    y = np.ascontiguousarray(a, dtype=np.float64)
    if y.shape != cs.values.shape:
        raise ConfigError(name, f"one value per cell ({len(cs.values)}), got {y.shape}")
    return y


def information_coefficient_at(score: CellScore, fwd: np.ndarray) -> np.ndarray:
    """:func:`information_coefficient` at the cells (``fwd`` in cell order): ``(T,)``."""
    y = _cell_values("fwd", score, fwd)
    out = np.empty(score.cells.n_sessions)
    _cell_spearman_nb(score.cells.start, score.order, score.count, score.values,
                      _segment_argsort(score.cells.start, y), y, out)
    return out


def quantize_at(score: CellScore, quantiles: int = 5) -> np.ndarray:
    """:func:`quantize` at the cells: bucket 1..Q per cell, 0 without a score (int16)."""
    if isinstance(quantiles, bool) or not isinstance(quantiles, int) or not 2 <= quantiles <= 1000:
        raise ConfigError("quantiles", f"must be a whole number from 2 to 1000, got {quantiles!r}")
    out = np.zeros(len(score.values), dtype=np.int16)
    if score.cells.n_sessions == 0:
        return out
    sizes, row = np.unique(score.count, return_inverse=True)
    row = np.where(score.count >= 2, row, -1).astype(np.int64)
    edges = np.vstack([_qcut_inner_edges(int(n), quantiles) for n in sizes])
    _cell_quantize_nb(score.cells.start, score.ranks, row, edges, out)
    return out


def mean_return_by_quantile_at(cells: Cells, buckets: np.ndarray, fwd: np.ndarray,
                               quantiles: int, *, demeaned: bool = True) -> QuantileReturns:
    """:func:`mean_return_by_quantile` at the cells (``buckets``/``fwd`` in cell order)."""
    y = np.ascontiguousarray(fwd, dtype=np.float64)
    b = np.ascontiguousarray(buckets, dtype=np.int16)
    if y.shape != cells.listing.shape or b.shape != y.shape:
        raise ConfigError("fwd", f"one bucket and return per cell ({len(cells.listing)}), "
                          f"got {b.shape} and {y.shape}")
    if int(b.max(initial=0)) > quantiles:
        raise ConfigError("quantiles", f"buckets go up to {int(b.max())}, more than {quantiles}")
    means = np.empty((cells.n_sessions, quantiles))
    counts = np.empty((cells.n_sessions, quantiles), dtype=np.int64)
    _cell_bucket_means_nb(cells.start, b, y, quantiles, demeaned, means, counts)
    return _quantile_returns(means, counts, quantiles, demeaned)


def quantile_turnover_at(cells: Cells, buckets: np.ndarray, quantile: int) -> np.ndarray:
    """:func:`quantile_turnover` (``period=1``) at the cells."""
    b = np.ascontiguousarray(buckets, dtype=np.int16)
    if b.shape != cells.listing.shape:
        raise ConfigError("buckets", f"one bucket per cell ({len(cells.listing)}), got "
                          f"{b.shape}")
    out = np.empty(cells.n_sessions)
    _cell_turnover_nb(cells.start, cells.listing, b, int(quantile), cells.n_listings, out)
    return out
