"""Chart patterns over a panel: (N, L) bool series, True at bar t when the pattern holds at t.

Each pattern reads only bars up to t and needs the bars its catalogue lookback says; where a row
has fewer real bars (padding) the pattern is False. "Depth" of a stretch of bars is
``(highest high - lowest low) / highest high`` in percent. Sessions, not calendar days: a week is
5 sessions. The definitions (also in README "Chart patterns"):

* ``nr7()`` — today's range (high - low) is strictly narrower than each of the 6 before.
* ``inside_bar()`` — high <= yesterday's high, low >= yesterday's low, range strictly smaller.
* ``gap_up(pct)`` — today's low is more than ``pct`` percent above yesterday's high.
* ``pocket_pivot(n)`` — an up close (close > yesterday's) on volume above the largest volume of
  the down closes (close < the close before) among the prior ``n`` sessions (0 if none).
* ``new_high(n)`` — today's high is the highest of the last ``n`` sessions (ties count).
* ``consolidation(n, max_range_pct)`` — the depth of the last ``n`` sessions is at most
  ``max_range_pct``.
* ``breakout(n, volume_mult)`` — close above the highest high of the prior ``n`` sessions, on
  volume at least ``volume_mult`` times the average volume of the prior 50 sessions.
* ``darvas_breakout()`` — the box top is the highest high of the prior 252 sessions (a 52-week
  high); the box bottom is the lowest low after the top, with at least 3 sessions between it
  and today, all above it (so the top is at least 5 sessions old); today closes above the top.
* ``flat_base(weeks, max_depth_pct)`` — the last ``5·weeks`` sessions have depth at most
  ``max_depth_pct``, after a prior advance: the base's highest high is at least 20 % above the
  lowest low of the ``5·weeks`` sessions before the base.
* ``vcp(contractions, max_depth_pct, n)`` — the last ``contractions·n`` sessions split into
  ``contractions`` stretches of ``n``: their depths strictly decrease, the first is at most
  ``max_depth_pct``, the last stretch's average volume is below the first's, and today's close
  is above its 200-session simple average (an uptrend).
* ``cup_with_handle(max_weeks, max_depth_pct, handle_depth_pct)`` — the right lip is the highest
  high 5 to 25 sessions ago; the handle (the bars after it, today's high excepted) stays below
  the lip and its lowest low is at most ``handle_depth_pct`` below the lip and above the cup's
  midpoint; the left lip is the highest high 35 (7 weeks) to ``5·max_weeks`` sessions before the
  right lip, no bar between the lips is higher than it, the right lip recovers to at least 90 %
  of it, and the cup (lowest low between the lips) is at most ``max_depth_pct`` deep.
* ``high_tight_flag(gain_pct, flag_depth_pct)`` — the flag top is the highest high 15 to 25
  sessions ago (a flag of 3 to 5 weeks), not exceeded since (today excepted); it is at least
  ``gain_pct`` percent above the lowest low of the 40 sessions (8 weeks) before it (the pole);
  the flag's lowest low is at most ``flag_depth_pct`` below the top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from technic_v4.terms.kernels import Bars, Impl

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


@njit(**_JIT)
def _first(c: np.ndarray) -> np.ndarray:
    """Index of each row's first real bar (the row width when it has none)."""
    n, width = c.shape
    out = np.full(n, width, np.int64)
    for r in range(n):
        for j in range(width):
            if not np.isnan(c[r, j]):
                out[r] = j
                break
    return out


@njit(**_JIT)
def _argmax(a: np.ndarray, i0: int, i1: int) -> int:
    """Index of the highest value in a[i0..i1] (inclusive; the latest one on ties)."""
    best = i0
    for j in range(i0 + 1, i1 + 1):
        if a[j] >= a[best]:
            best = j
    return best


@njit(**_JIT)
def _argmin(a: np.ndarray, i0: int, i1: int) -> int:
    best = i0
    for j in range(i0 + 1, i1 + 1):
        if a[j] <= a[best]:
            best = j
    return best


@njit(**_JIT)
def _depth(h: np.ndarray, lo: np.ndarray, i0: int, i1: int) -> float:
    top = h[_argmax(h, i0, i1)]
    return (top - lo[_argmin(lo, i0, i1)]) / top * 100.0


@njit(**_JIT)
def _simple(kind: int, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
            v: np.ndarray, n: int, x: float) -> np.ndarray:
    """The one-window patterns; ``kind`` picks one (see the public wrappers)."""
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    look = (6, 1, 1, n + 1, n - 1, n - 1, max(n, 50))[kind]
    for r in range(rows):
        for t in range(first[r] + look, width):
            if kind == 0:  # nr7
                rng = h[r, t] - lo[r, t]
                ok_t = True
                for j in range(t - 6, t):
                    ok_t = ok_t and rng < h[r, j] - lo[r, j]
            elif kind == 1:  # inside_bar
                ok_t = (h[r, t] <= h[r, t - 1] and lo[r, t] >= lo[r, t - 1]
                        and h[r, t] - lo[r, t] < h[r, t - 1] - lo[r, t - 1])
            elif kind == 2:  # gap_up
                ok_t = lo[r, t] > h[r, t - 1] * (1.0 + x / 100.0)
            elif kind == 3:  # pocket_pivot
                down = 0.0
                for j in range(t - n, t):
                    if c[r, j] < c[r, j - 1] and v[r, j] > down:
                        down = v[r, j]
                ok_t = c[r, t] > c[r, t - 1] and v[r, t] > down
            elif kind == 4:  # new_high
                ok_t = _argmax(h[r], t - n + 1, t) == t
            elif kind == 5:  # consolidation
                ok_t = _depth(h[r], lo[r], t - n + 1, t) <= x
            else:  # breakout
                avg = 0.0
                for j in range(t - 50, t):
                    avg += v[r, j]
                avg /= 50.0
                ok_t = (c[r, t] > h[r, _argmax(h[r], t - n, t - 1)]
                        and v[r, t] >= x * avg)
            out[r, t] = ok_t
    return out


@njit(**_JIT)
def _darvas(h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    for r in range(rows):
        for t in range(first[r] + 252, width):
            p = _argmax(h[r], t - 252, t - 1)  # the top: latest bar at the 52-week high
            if p > t - 5:
                continue
            q = _argmin(lo[r], p + 1, t - 1)  # the bottom: latest bar at the lowest low since
            out[r, t] = q <= t - 4 and c[r, t] > h[r, p]
    return out


@njit(**_JIT)
def _flat_base(h: np.ndarray, lo: np.ndarray, c: np.ndarray, m: int, x: float) -> np.ndarray:
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    for r in range(rows):
        for t in range(first[r] + 2 * m - 1, width):
            top = h[r, _argmax(h[r], t - m + 1, t)]
            prior_low = lo[r, _argmin(lo[r], t - 2 * m + 1, t - m)]
            out[r, t] = _depth(h[r], lo[r], t - m + 1, t) <= x and top >= 1.2 * prior_low
    return out


@njit(**_JIT)
def _vcp(h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, k: int, x: float,
         n: int) -> np.ndarray:
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    look = max(199, k * n - 1)
    for r in range(rows):
        for t in range(first[r] + look, width):
            sma = 0.0
            for j in range(t - 199, t + 1):
                sma += c[r, j]
            if not c[r, t] > sma / 200.0:
                continue
            start = t - k * n + 1
            prev = x
            ok = True
            for s in range(k):  # each stretch shallower than the one before (the first <= x)
                d = _depth(h[r], lo[r], start + s * n, start + s * n + n - 1)
                if d > prev or (s > 0 and d == prev):
                    ok = False
                    break
                prev = d
            if not ok:
                continue
            v_first = 0.0
            v_last = 0.0
            for j in range(n):
                v_first += v[r, start + j]
                v_last += v[r, t - n + 1 + j]
            out[r, t] = v_last < v_first
    return out


@njit(**_JIT)
def _cup(h: np.ndarray, lo: np.ndarray, c: np.ndarray, max_weeks: int, x: float,
         handle: float) -> np.ndarray:
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    for r in range(rows):
        for t in range(first[r] + 5 * max_weeks + 25, width):
            rc = _argmax(h[r], t - 25, t - 5)  # right lip
            lip = h[r, rc]
            if rc < t - 1 and h[r, _argmax(h[r], rc + 1, t - 1)] > lip:
                continue  # the handle rose above the lip
            la = _argmax(h[r], rc - 5 * max_weeks, rc - 35)  # left lip
            left = h[r, la]
            if h[r, _argmax(h[r], la + 1, rc)] > left or lip < 0.9 * left:
                continue
            bottom = lo[r, _argmin(lo[r], la + 1, rc - 1)]
            handle_low = lo[r, _argmin(lo[r], rc + 1, t)]
            out[r, t] = ((left - bottom) / left * 100.0 <= x
                         and (lip - handle_low) / lip * 100.0 <= handle
                         and handle_low > (left + bottom) / 2.0)
    return out


@njit(**_JIT)
def _htf(h: np.ndarray, lo: np.ndarray, c: np.ndarray, gain: float, depth: float) -> np.ndarray:
    rows, width = c.shape
    out = np.zeros((rows, width), np.bool_)
    first = _first(c)
    for r in range(rows):
        for t in range(first[r] + 65, width):
            p = _argmax(h[r], t - 25, t - 15)  # flag top
            top = h[r, p]
            if h[r, _argmax(h[r], p + 1, t - 1)] > top:
                continue
            pole_low = lo[r, _argmin(lo[r], p - 40, p - 1)]
            flag_low = lo[r, _argmin(lo[r], p + 1, t)]
            out[r, t] = (top >= (1.0 + gain / 100.0) * pole_low
                         and (top - flag_low) / top * 100.0 <= depth)
    return out


def _f(bars: Bars) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(getattr(bars, f), dtype=np.float64)
                 for f in ("open", "high", "low", "close", "volume"))


def _simple_impl(kind: int, window: str | None, number: str | None) -> Impl:
    def impl(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
        n = int(p[window]) if window else 1
        x = float(p[number]) if number else 0.0
        return _simple(kind, *_f(bars), n, x)
    return impl


def darvas_breakout(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]
                    ) -> np.ndarray:
    _, h, lo, c, _ = _f(bars)
    return _darvas(h, lo, c)


def flat_base(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    _, h, lo, c, _ = _f(bars)
    return _flat_base(h, lo, c, 5 * int(p["weeks"]),
                      float(p["max_depth_pct"]))


def vcp(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]) -> np.ndarray:
    _, h, lo, c, v = _f(bars)
    return _vcp(h, lo, c, v, int(p["contractions"]),
                float(p["max_depth_pct"]), int(p["n"]))


def cup_with_handle(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]
                    ) -> np.ndarray:
    _, h, lo, c, _ = _f(bars)
    return _cup(h, lo, c, int(p["max_weeks"]), float(p["max_depth_pct"]),
                float(p["handle_depth_pct"]))


def high_tight_flag(bars: Bars, args: tuple[np.ndarray, ...], p: Mapping[str, Any]
                    ) -> np.ndarray:
    _, h, lo, c, _ = _f(bars)
    return _htf(h, lo, c, float(p["gain_pct"]),
                float(p["flag_depth_pct"]))


IMPLS: dict[str, Impl] = {
    "nr7": _simple_impl(0, None, None),
    "inside_bar": _simple_impl(1, None, None),
    "gap_up": _simple_impl(2, None, "pct"),
    "pocket_pivot": _simple_impl(3, "n", None),
    "new_high": _simple_impl(4, "n", None),
    "consolidation": _simple_impl(5, "n", "max_range_pct"),
    "breakout": _simple_impl(6, "n", "volume_mult"),
    "darvas_breakout": darvas_breakout,
    "flat_base": flat_base,
    "vcp": vcp,
    "cup_with_handle": cup_with_handle,
    "high_tight_flag": high_tight_flag,
}
