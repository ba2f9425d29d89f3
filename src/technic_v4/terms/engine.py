"""Evaluate checked terms over the panel: one computation per key per scan.

Algorithm, for one scan (one :class:`Evaluator`, shared by ``where``, ``columns`` and
``sort_by``):

1. ``plan`` walks each root term parents first and gives every key the number of trailing bars its
   consumers need (its *width*): the root needs the latest bar; ``x[n]`` needs ``n`` more of ``x``;
   a window function that reads only its window (``highest``, ``sum``, ``change`` …) needs its
   lookback more; every other function (recursive indicators, ``bars_since``, candlesticks,
   patterns, ``ta.*``) reads its arguments' whole history, so they get the whole panel. So a
   comparison of two indicators runs on one column, not on the panel.
2. ``_eval`` computes a key at its planned width once (children first, recursively) and caches it;
   a later request for fewer bars slices the cached value.
3. A term whose key is a built-in scan column (:data:`BUILTIN_KEYS`, e.g. ``rsi(close,14)`` is
   ``RSI14``) and whose latest value alone is needed is read from the scan's ``columns``.
4. ``weekly(expr)`` / ``monthly(expr)``: ``expr`` is evaluated by an Evaluator over the
   resampled bars (:func:`technic_v4.terms.kernels.timeframes.resample`); its value on daily bar
   ``t`` is its latest value on the bars up to ``t`` (point in time: the week of ``t`` is the
   unfinished week as of ``t``), so ``weekly(close)[1]`` is yesterday's view of the week.

Values: numbers float64 (NaN where undefined; division by zero is NaN), conditions bool (False
where undefined: a comparison with NaN does not hold, ``!=`` included), strings object arrays
(``None`` where missing; a comparison with a missing string does not hold either). Values that do
not change between sessions (literals, the reference fields ``sector`` … ``symbol``, scan output
columns, which the checker lets be read at the latest session only) are kept as one column and
broadcast.

``rank(x)`` is RSRating's percentile, 1–99 = round(1 + 98·(r − ½)/n) with r the average rank of
ties and n the listings with a value (in the group, with ``by=``), NaN staying NaN; ``zscore(x)``
is (x − mean) / population standard deviation (ddof=0) over the same listings, NaN when that is 0.
Both are taken across the N rows of the Evaluator (the listings that reach this stage), bar by
bar.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np
import pandas as pd

from technic_v4.errors import ConfigError
from technic_v4.terms.catalog import FUNCTIONS
from technic_v4.terms.kernels import IMPLS, Bars
from technic_v4.terms.kernels.indicators import ta_impl
from technic_v4.terms.kernels.timeframes import Timeframe, resample
from technic_v4.terms.kernels.windows import LOCAL, shift
from technic_v4.terms.language.keys import DAILY, Term
from technic_v4.terms.language.screen import Screen

# Keys whose latest value is a built-in scan column (pipeline.COLUMNS spelling): read, not
# recomputed, when the scan passes its columns. test_engine checks each equals the recomputed one
# bit for bit.
BUILTIN_KEYS: dict[str, str] = {
    "sma(close,20)": "SMA20", "sma(close,50)": "SMA50", "sma(close,200)": "SMA200",
    "ema(close,21)": "EMA21", "rsi(close,14)": "RSI14",
    "macd(close,12,26,9)": "MACD", "macd_signal(close,12,26,9)": "MACDSignal",
    "macd_hist(close,12,26,9)": "MACDHist", "atr(14)": "ATR14", "adx(14)": "ADX14",
    "plus_di(14)": "PlusDI14", "minus_di(14)": "MinusDI14",
    "bb_upper(close,20,2)": "BBUpper", "bb_middle(close,20,2)": "BBMiddle",
    "bb_lower(close,20,2)": "BBLower",
}

# Reference fields (strings that do not change between sessions) and their ref columns.
_REF_FIELDS = {"sector": "Sector", "industry": "Industry", "type": "Type",
               "exchange": "Exchange", "symbol": "Symbol"}
_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "!=": np.not_equal}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
_ELEMENTWISE = frozenset({"neg", "not", "in", *_COMPARE, *_ARITH, "and", "or"})


# Daily sessions on which a weekly/monthly term may be read (each one rebuilds the timeframe's
# bars as of that session): `weekly(x)[n]`, windows over it and crossings stay far below this.
MAX_TIMEFRAME_SESSIONS = 66


class Evaluator:
    """Evaluates terms over one panel; every distinct key is computed once.

    ``bars``: the panel; ``ref``: reference rows aligned with the panel rows (Symbol, Sector,
    Industry, Type, Exchange, SharesOutstanding …); ``columns``: scan output columns by their
    pipeline.COLUMNS spelling, (N,) latest values. ``computed`` counts computations per key.
    """

    def __init__(self, bars: Bars, ref: pd.DataFrame,
                 columns: Mapping[str, np.ndarray] | None = None,
                 timeframe: str = DAILY, reuse_builtins: bool = True) -> None:
        self.bars = bars
        self.n, self.width = bars.close.shape
        if len(ref) != self.n:
            raise ValueError(f"ref has {len(ref)} rows, the panel {self.n}")
        self.ref = ref
        self.columns = columns or {}
        # A built-in column is the term's value only when it was computed on these very bars
        # (a screen loading more bars than lookback_days computes its own).
        self.reuse_builtins = reuse_builtins
        self.timeframe = timeframe
        self._real = bars.day >= 0
        self.computed: Counter[str] = Counter()
        self._cache: dict[str, np.ndarray] = {}
        self._static: set[str] = set()  # keys whose value is one column valid for every bar
        self._demand: dict[str, int] = {}
        self._subs: dict[tuple[str, int], Evaluator] = {}
        self._groups: dict[str, np.ndarray] = {}

    # --- public -----------------------------------------------------------------------------
    def plan(self, terms: Iterable[Term], width: int = 1) -> None:
        """Tell the evaluator what will be asked (``width`` trailing bars of each term), so a key
        shared by several expressions of a scan is computed once, wide enough for all."""
        for t in terms:
            self._plan(t, width)

    def series(self, term: Term) -> np.ndarray:
        """(N, L) values of ``term`` on every bar. A latest-only term (a scan output column and
        what is built on it) has its value on the last bar only (NaN / False / None before)."""
        self._plan(term, self.width)
        v = self._eval(term, self.width)
        if term.latest:
            out = self._empty(term, self.width)
            out[:, -1] = self._col(v)[:, -1]
            return out
        return np.broadcast_to(self._col(v), (self.n, self.width))

    def latest(self, term: Term) -> np.ndarray:
        """(N,) value of ``term`` on the latest bar (float64, bool or object)."""
        self._plan(term, 1)
        return np.ascontiguousarray(self._col(self._eval(term, 1))[:, -1])

    # --- planning ---------------------------------------------------------------------------
    def _plan(self, root: Term, width: int) -> None:
        order: dict[str, Term] = {}
        for t in root.walk():  # children before parents
            if t.op != "const":
                order.setdefault(t.key, t)
        need = {root.key: min(width, self.width)}
        for key, t in reversed(order.items()):  # parents first
            w = need.get(key)
            if w is None:
                continue
            self._demand[key] = max(self._demand.get(key, 0), w)
            if t.timeframe != self.timeframe:
                continue  # the sub-evaluator of that timeframe plans its own subtree
            for c, cw in zip(t.args, self._child_widths(t, w), strict=True):
                if c.op != "const":
                    need[c.key] = max(need.get(c.key, 0), min(cw, self.width))

    def _child_widths(self, t: Term, w: int) -> list[int]:
        if t.op == "index":
            return [w + int(t.param["n"])]  # type: ignore[arg-type]
        if t.op in _ELEMENTWISE or t.name in ("rank", "zscore"):
            return [w] * len(t.args)
        if t.op == "call" and t.name in LOCAL:
            own = FUNCTIONS[t.name].lookback(t.param)
            return [w + own] * len(t.args)
        return [self.width] * len(t.args)

    # --- evaluation -------------------------------------------------------------------------
    def _eval(self, t: Term, w: int) -> Any:
        """The last ``w`` bars of ``t``: an (N, w) array, an (N, 1) array for a static value,
        or a numpy scalar for a literal."""
        if t.op == "const":
            return np.float64(t.value) if t.type == "number" else (
                np.bool_(t.value) if t.type == "bool" else t.value)
        key = t.key
        got = self._cache.get(key)
        if got is not None and (key in self._static or got.shape[1] >= w):
            return got if key in self._static else got[:, got.shape[1] - w:]
        width = min(self.width, max(w, self._demand.get(key, 0)))
        value, static = self._compute(t, width)
        self.computed[key] += 1
        self._cache[key] = value
        if static:
            self._static.add(key)
            return value
        return value[:, value.shape[1] - w:]

    def _compute(self, t: Term, w: int) -> tuple[np.ndarray, bool]:
        if t.timeframe != self.timeframe:
            return self._other_timeframe(t, w), False
        if t.op == "field":
            return self._field(t.name, w)
        if t.op == "column":
            return self._column(t), True
        if t.op == "call":
            builtin = BUILTIN_KEYS.get(t.key)
            if w == 1 and self.reuse_builtins and builtin is not None and \
                    builtin in self.columns:
                return np.asarray(self.columns[builtin], np.float64).reshape(self.n, 1), False
            return self._call(t, w)
        if t.op == "index":
            return self._index(t, w)
        args = [self._eval(a, w) for a in t.args]
        static = all(self._is_static(a) for a in t.args)
        with np.errstate(all="ignore"):
            if t.op == "neg":
                out = np.negative(args[0])
            elif t.op == "not":  # a padding bar is not a session: nothing holds there
                out = np.logical_not(args[0])
                if not static:
                    out &= self._real[:, self.width - w:]
            elif t.op in ("and", "or"):
                out = (np.logical_and if t.op == "and" else np.logical_or)(*args)
            elif t.op in _ARITH:
                out = _ARITH[t.op](*args)
                if t.op == "/":
                    out = np.where(args[1] == 0, np.nan, out)
            elif t.op in _COMPARE:
                out = self._compare(t.op, args[0], args[1], t.args[0].type)
            elif t.op == "in":
                out = self._in(args[0], t.param["options"], t.args[0].type)
            else:
                raise AssertionError(f"unknown term op {t.op!r}")
        return self._shape(out, w, static), static

    def _shape(self, out: Any, w: int, static: bool) -> np.ndarray:
        a = np.asarray(out)
        cols = 1 if static else w
        if a.shape != (self.n, cols):
            a = np.ascontiguousarray(np.broadcast_to(a, (self.n, cols)))
        return a

    def _is_static(self, t: Term) -> bool:
        return t.op == "const" or t.key in self._static

    @staticmethod
    def _compare(op: str, a: Any, b: Any, kind: str) -> np.ndarray:
        if kind == "string":
            known = pd.notna(a) & pd.notna(b)
            return np.asarray(_COMPARE[op](a, b), dtype=bool) & known
        out = _COMPARE[op](a, b)
        if op == "!=":
            out = out & ~np.isnan(a) & ~np.isnan(b)
        return np.asarray(out)

    @staticmethod
    def _in(x: Any, options: Any, kind: str) -> np.ndarray:
        out = np.zeros(np.shape(x), dtype=bool)
        for o in options:
            out |= np.asarray(np.equal(x, o), dtype=bool)
        return out

    def _field(self, name: str, w: int) -> tuple[np.ndarray, bool]:
        b = self.bars
        if name in ("open", "high", "low", "close", "volume"):
            return getattr(b, name), False  # the whole panel: a view, free
        if name == "dollar_volume":
            return b.close[:, self.width - w:] * b.volume[:, self.width - w:], False
        if name == "market_cap":
            shares = self.ref["SharesOutstanding"].to_numpy(np.float64)
            return shares[:, None] * b.close[:, self.width - w:], False
        col = self.ref[_REF_FIELDS[name]]
        values = col.astype(object).where(col.notna(), None).to_numpy(dtype=object)
        return values[:, None], True

    def _column(self, t: Term) -> np.ndarray:
        if t.name not in self.columns:
            raise ConfigError("where", f"the scan column `{t.name}` is not available here")
        v = np.asarray(self.columns[t.name])
        if v.dtype.kind == "O":
            v = pd.Series(v, dtype=object).where(pd.notna(v), None).to_numpy(dtype=object)
        elif t.type == "number":
            v = v.astype(np.float64)
        return v.reshape(self.n, 1)

    def _index(self, t: Term, w: int) -> tuple[np.ndarray, bool]:
        n = int(t.param["n"])  # type: ignore[arg-type]
        x = t.args[0]
        v = self._eval(x, min(self.width, w + n))
        full = self._full(v, min(self.width, w + n), x)
        return np.ascontiguousarray(shift(full, n)[:, full.shape[1] - w:]), False

    def _call(self, t: Term, w: int) -> tuple[np.ndarray, bool]:
        name = t.name
        params = {k: int(v) if isinstance(v, float) and _is_window(name, k) else v
                  for k, v in t.params}
        if name in ("rank", "zscore"):
            x = t.args[0]
            v = self._col(self._eval(x, w)) if not self._is_static(x) else self._eval(x, w)
            static = self._is_static(x)
            by = params.get("by")
            groups = self._group_codes(str(by)) if by else np.zeros(self.n, dtype=np.int64)
            v = np.asarray(v, dtype=np.float64).reshape(self.n, -1)
            f = _rank if name == "rank" else _zscore
            out = np.column_stack([f(v[:, j], groups) for j in range(v.shape[1])])
            return out, static
        if name in LOCAL:
            own = FUNCTIONS[name].lookback(t.param)
            width = min(self.width, w + own)
        else:
            width = self.width
        args = tuple(self._full(self._eval(a, width), width, a) for a in t.args)
        bars = self.bars if width == self.width else _tail(self.bars, width)
        impl = ta_impl(name[3:], t.output) if name.startswith("ta.") else IMPLS.get(name)
        if impl is None:
            raise ConfigError("where", f"`{name}` has no implementation yet")
        out = np.asarray(impl(bars, args, params))
        if t.type == "bool" and out.dtype != bool:
            out = out.astype(bool)
        valid = width if width == self.width else w  # a shorter input: the first bars are cut
        return np.ascontiguousarray(out[:, out.shape[1] - valid:]), False

    def _full(self, v: Any, width: int, t: Term) -> np.ndarray:
        """A materialised (N, width) array of a value; a static value is broadcast over the
        row's real bars (NaN / False on padding, where the row has no session)."""
        if isinstance(v, np.ndarray) and v.shape == (self.n, width):
            return v
        dtype = np.float64 if t.type == "number" else (bool if t.type == "bool" else object)
        out = np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dtype), (self.n, width)))
        real = self._real[:, self.width - width:]
        if t.type == "bool":
            out &= real
        elif t.type == "number":
            out[~real] = np.nan
        return out

    def _col(self, v: Any) -> np.ndarray:
        """A value as an (N, k) array (a literal becomes one column)."""
        a = np.asarray(v)
        return a if a.ndim == 2 else np.full((self.n, 1), a, dtype=a.dtype)

    def _empty(self, t: Term, width: int) -> np.ndarray:
        if t.type == "number":
            return np.full((self.n, width), np.nan)
        if t.type == "bool":
            return np.zeros((self.n, width), dtype=bool)
        return np.full((self.n, width), None, dtype=object)

    def _group_codes(self, by: str) -> np.ndarray:
        if by not in self._groups:
            codes, _ = pd.factorize(self.ref[_REF_FIELDS[by]], use_na_sentinel=True)
            self._groups[by] = np.asarray(codes, dtype=np.int64)
        return self._groups[by]

    # --- weekly / monthly -------------------------------------------------------------------
    def _other_timeframe(self, t: Term, w: int) -> np.ndarray:
        """A weekly/monthly term on the last ``w`` daily bars: on bar ``t`` its latest value over
        the bars up to ``t``."""
        if w > MAX_TIMEFRAME_SESSIONS:
            raise ConfigError("expression", f"`{t.key}` would be rebuilt on weekly/monthly bars "
                              f"as of each of {w} sessions (at most {MAX_TIMEFRAME_SESSIONS}); "
                              "put the daily function inside the timeframe instead, e.g. "
                              "`weekly(bars_since(…))` rather than `bars_since(weekly(…))`")
        out = self._empty(t, w)
        for j in range(min(w, self.width)):
            out[:, w - 1 - j] = self._sub(t.timeframe, j).latest(t)
        return out

    def _sub(self, timeframe: str, back: int) -> Evaluator:
        """The evaluator of the weekly/monthly bars as of ``back`` sessions ago. Only today's is
        kept (shared by every term of that timeframe); earlier ones are rebuilt per term, so
        memory stays one resampled panel however many sessions a term reads."""
        key = (timeframe, back)
        sub = self._subs.get(key)
        if sub is None:
            bars = self.bars if back == 0 else _head(self.bars, self.width - back)
            sub = Evaluator(resample(bars, cast(Timeframe, timeframe)), self.ref, None,
                            timeframe)
            if back == 0:
                self._subs[key] = sub
        return sub


def _is_window(name: str, param: str) -> bool:
    f = FUNCTIONS.get(name)
    if f is None:  # ta.<name>: TA-Lib takes its periods and whole numbers as int
        from technic_v4.terms.catalog import ta_function

        ta = ta_function(name[3:])
        return ta is not None and any(p.name == param and p.kind in ("window", "int")
                                      for p in ta.params)
    return any(p.name == param and p.kind in ("window", "int") for p in f.params)


def _tail(b: Bars, n: int) -> Bars:
    w = b.close.shape[1]
    return b.map(lambda a: a[:, w - n:])


def _head(b: Bars, n: int) -> Bars:
    return b.map(lambda a: np.ascontiguousarray(a[:, :n]))


def _rank(v: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """RSRating's 1-99 percentile within each group (ties share the average rank)."""
    out = np.full(len(v), np.nan)
    ok = np.flatnonzero(np.isfinite(v) & (groups >= 0))
    if len(ok) == 0:
        return out
    vv, gg = v[ok], groups[ok]
    order = np.lexsort((vv, gg))
    vs, gs = vv[order], gg[order]
    size = np.bincount(gs)
    start = np.concatenate(([0], np.cumsum(size)[:-1]))
    pos = np.arange(1, len(vs) + 1, dtype=np.float64) - start[gs]
    # ties: runs of equal (group, value) share their average position
    new = np.ones(len(vs), dtype=bool)
    new[1:] = (gs[1:] != gs[:-1]) | (vs[1:] != vs[:-1])
    run = np.cumsum(new) - 1
    avg = (np.bincount(run, weights=pos) / np.bincount(run))[run]
    pct = (avg - 0.5) / size[gs]
    res = np.empty(len(vs))
    res[order] = np.clip(np.round(1 + 98 * pct), 1, 99)
    out[ok] = res
    return out


def _zscore(v: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(v - mean) / population std within each group; NaN where the std is 0 or v is NaN."""
    out = np.full(len(v), np.nan)
    ok = np.flatnonzero(np.isfinite(v) & (groups >= 0))
    if len(ok) == 0:
        return out
    vv, gg = v[ok], groups[ok]
    cnt = np.bincount(gg)
    with np.errstate(all="ignore"):
        mean = np.bincount(gg, weights=vv) / cnt
        d = vv - mean[gg]
        sd = np.sqrt(np.bincount(gg, weights=d * d) / cnt)
        z = d / sd[gg]
    z[sd[gg] == 0] = np.nan
    out[ok] = z
    return out


def evaluate(screen: Screen, ev: Evaluator) -> np.ndarray:
    """(N,) bool: rows where the screen holds on the latest bar (NaN: it does not)."""
    return np.asarray(ev.latest(screen.term), dtype=bool)


def clause_mask(screen: Screen, ev: Evaluator) -> np.ndarray:
    """(N, n_clauses) bool: which top-level ``and`` clauses hold on each row (Matched/Failed)."""
    ev.plan(c.term for c in screen.clauses)
    if not screen.clauses:
        return np.zeros((ev.n, 0), dtype=bool)
    return np.column_stack([np.asarray(ev.latest(c.term), dtype=bool)
                            for c in screen.clauses])


__all__ = ["BUILTIN_KEYS", "Evaluator", "clause_mask", "evaluate"]
