"""Syntax tree → checked :class:`~technic_v4.terms.language.keys.Term` tree.

Resolves names (fields and scan output columns case-insensitively, functions from
:mod:`technic_v4.terms.catalog`), binds arguments (positional, keyword, defaults), checks argument
kinds (window lengths are positive whole-number literals), types (numbers, conditions, strings)
and the limits of :mod:`.limits`. Every failure is a
:class:`~technic_v4.terms.language.errors.ScreenError` pointing at the text at fault, with the
closest valid names for an unknown one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from typing import Any

from technic_v4.errors import ConfigError
from technic_v4.terms import catalog
from technic_v4.terms.catalog import FUNCTIONS, Kind, Param, TaFunction
from technic_v4.terms.language import limits
from technic_v4.terms.language.ast import (
    Binary,
    Bool,
    Call,
    In,
    Index,
    Name,
    Node,
    Number,
    Span,
    String,
    Unary,
)
from technic_v4.terms.language.errors import ScreenError
from technic_v4.terms.language.keys import DAILY, Lit, ParamValue, Term, binary, child, literal

# Fields every listing has: price and volume series, and strings from the reference data.
FIELDS: dict[str, Kind] = {
    "open": "number", "high": "number", "low": "number", "close": "number", "volume": "number",
    "dollar_volume": "number", "market_cap": "number",
    "sector": "string", "industry": "string", "type": "string", "exchange": "string",
    "symbol": "string",
}
# Scan output columns that are the fields above under another spelling.
_COLUMN_ALIASES = {"close": "close", "volume": "volume", "marketcap": "market_cap",
                   "sector": "sector", "industry": "industry", "type": "type",
                   "exchange": "exchange", "symbol": "symbol"}
# LastDate: a date (no date literals in the language yet). Rank, Rationale, Matched, Failed:
# made by the output and screen stages from the screen's own result, so never its input.
_NOT_SCREENABLE = {"LastDate", "Rank", "Rationale", "Matched", "Failed"}
_COMPARE = ("<", "<=", ">", ">=", "==", "!=")
_ARITH = ("+", "-", "*", "/")
_KIND_WORD = {"number": "a number", "bool": "a condition (true/false)", "string": "a string"}


@cache
def output_columns() -> dict[str, tuple[str, Kind]]:
    """Scan output columns by lower-case name: (their spelling, their kind). Read from the
    pipeline on first use (not at import: the pipeline will import this package)."""
    from technic_v4.pipeline import COLUMNS, empty_frame

    dtypes = empty_frame().dtypes
    out: dict[str, tuple[str, Kind]] = {}
    for c in COLUMNS:
        if c.lower() in _COLUMN_ALIASES or c in _NOT_SCREENABLE:
            continue
        out[c.lower()] = (c, "string" if dtypes[c].kind == "O" else "number")
    return out


def _word(t: Term) -> str:
    return _KIND_WORD[t.type]


def _lit(node: Node) -> Lit | Node:
    """The value of a literal node (``-5`` included), else the node itself."""
    if isinstance(node, Number | String | Bool):
        return node.value
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Number):
        return -node.operand.value
    return node


class Checker:
    """Checks one expression; ``text`` and ``field`` go into its errors."""

    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field

    def error(self, message: str, span: Span, suggestions: Sequence[str] = ()) -> ScreenError:
        return ScreenError(self.field, message, self.text, span, tuple(suggestions))

    # --- nodes ------------------------------------------------------------------------------
    def check(self, node: Node, tf: str = DAILY) -> Term:
        if isinstance(node, Number | String | Bool):
            return self.const(node.value, node.span)
        if isinstance(node, Name):
            return self.name(node, tf)
        if isinstance(node, Unary):
            return self.unary(node, tf)
        if isinstance(node, Binary):
            return self.binary(node, tf)
        if isinstance(node, In):
            return self.in_(node, tf)
        if isinstance(node, Index):
            return self.index(node, tf)
        return self.call(node, tf)

    def const(self, value: Lit, span: Span) -> Term:
        kind: Kind = ("bool" if isinstance(value, bool) else
                      "string" if isinstance(value, str) else "number")
        if kind == "number":
            value = float(value)  # type: ignore[arg-type]
        return Term("const", "", kind, literal(value), value=value, span=span)

    def name(self, node: Name, tf: str) -> Term:
        low = node.name.lower()
        if low in FIELDS or low in _COLUMN_ALIASES:
            name = _COLUMN_ALIASES.get(low, low)
            return Term("field", name, FIELDS[name], name, timeframe=tf, span=node.span)
        cols = output_columns()
        if low in cols:
            canon, kind = cols[low]
            if tf != DAILY:
                raise self.error(f"`{canon}` is a scan output column (latest session only); "
                                 f"it has no {tf} bars", node.span)
            return Term("column", canon, kind, canon, latest=True, span=node.span)
        if low in FUNCTIONS:
            raise self.error(f"`{low}` is a function: call it, e.g. `{low}()`", node.span)
        made_later = {c.lower(): c for c in _NOT_SCREENABLE}
        if low in made_later:
            raise self.error(f"`{made_later[low]}` is an output column made after the screen "
                             "(or a date); it cannot be screened", node.span)
        names = [*FIELDS, *(c for c, _ in cols.values()), *FUNCTIONS]
        raise self.error(f"unknown name `{node.name}`", node.span, _closest(node.name, names))

    def unary(self, node: Unary, tf: str) -> Term:
        x = self.check(node.operand, tf)
        if node.op == "-":
            self.want(x, "number", node.operand.span, "`-`")
            if x.op == "const":
                return self.const(-x.value, node.span)  # type: ignore[operator]
            return self.derived("neg", "number", f"(-{child(x, tf)})", (x,), tf, node.span)
        self.want(x, "bool", node.operand.span, "`not`")
        return self.derived("not", "bool", f"(not {child(x, tf)})", (x,), tf, node.span)

    def binary(self, node: Binary, tf: str) -> Term:
        # Down the left spine without recursion: a chain `a + b + c + …` is as long as the text
        # allows, while its operands nest at most MAX_DEPTH deep.
        spine: list[Binary] = []
        left: Node = node
        while isinstance(left, Binary):
            spine.append(left)
            left = left.left
        acc = self.check(left, tf)
        for b in reversed(spine):
            acc = self.combine(b, acc, self.check(b.right, tf), tf)
        return acc

    def combine(self, node: Binary, a: Term, b: Term, tf: str) -> Term:
        op = node.op
        kind: Kind
        if op in ("and", "or"):
            self.want(a, "bool", node.left.span, f"`{op}`")
            self.want(b, "bool", node.right.span, f"`{op}`")
            kind = "bool"
        elif op in _ARITH:
            self.want(a, "number", node.left.span, f"`{op}`")
            self.want(b, "number", node.right.span, f"`{op}`")
            kind = "number"
        else:
            if a.type != b.type:
                raise self.error(f"`{op}` compares {_word(a)} with {_word(b)}", node.op_span)
            if a.type != "number" and op not in ("==", "!="):
                raise self.error(f"{_word(a)} can only be compared with `==`, `!=` or `in`, "
                                 f"not `{op}`", node.op_span)
            kind = "bool"
        body = binary(op, child(a, tf), child(b, tf))
        return self.derived(op, kind, body, (a, b), tf, node.span)

    def in_(self, node: In, tf: str) -> Term:
        x = self.check(node.operand, tf)
        if x.type == "bool":
            raise self.error("`in` needs a number or a string on its left, not a condition",
                             node.operand.span)
        values: list[Lit] = []
        for opt in node.options:
            v = _lit(opt)
            if isinstance(v, Node):
                raise self.error("the options of `in` must be literal numbers or strings",
                                 opt.span)
            t = self.const(v, opt.span)
            if t.type != x.type:
                raise self.error(f"`in` compares {_word(x)} with {_word(t)}", opt.span)
            values.append(t.value)
        options = tuple(sorted(set(values), key=literal))
        body = f"({child(x, tf)} in ({literal(options)}))"
        return self.derived("in", "bool", body, (x,), tf, node.span,
                            params=(("options", options),))

    def index(self, node: Index, tf: str) -> Term:
        x = self.check(node.operand, tf)
        n = self.whole(node.offset, 0, "the offset in x[n]")
        if x.type == "string":
            raise self.error("x[n] needs a number or a condition; strings do not change "
                             "between sessions", node.operand.span)
        if n == 0 or x.op == "const":  # a literal has no history: 5[3] is 5
            return x
        if x.op == "index":  # close[1][2] is close[3]
            n += int(x.param["n"])  # type: ignore[arg-type]
            x = x.args[0]
            if n > limits.MAX_WINDOW:
                raise self.error(f"the offset in x[n] adds up to more than "
                                 f"{limits.MAX_WINDOW:,}", node.span)
        if x.latest:
            raise self.error(f"`{x.key}` exists for the latest session only; x[n] needs a "
                             "series (use the function, e.g. rsi(close,14)[1])", node.operand.span)
        return self.derived("index", x.type, f"{child(x, tf)}[{n}]", (x,), tf,
                            node.span, params=(("n", float(n)),), extra=n)

    # --- calls ------------------------------------------------------------------------------
    def call(self, node: Call, tf: str) -> Term:
        low = node.func.lower()
        if low in ("weekly", "monthly"):
            return self.timeframe(node, low, tf)
        if low.startswith("ta."):
            return self.ta_call(node, low[3:], tf)
        f = FUNCTIONS.get(low)
        if f is None:
            if low in FIELDS or low in _COLUMN_ALIASES or low in output_columns():
                raise self.error(f"`{node.func}` is a field, not a function", node.func_span)
            raise self.error(f"unknown function `{node.func}`", node.func_span,
                             _closest(node.func, list(FUNCTIONS)))
        bound = self.bind(node, f.name, f.params)
        return self.build(node, f.name, f.params, bound, f.returns, f.windowed,
                          lambda p: f.lookback(p), tf)

    def timeframe(self, node: Call, which: str, tf: str) -> Term:
        if tf != DAILY:
            raise self.error(f"`{which}()` cannot be used inside `{tf}()`", node.func_span)
        if len(node.args) != 1 or node.kwargs:
            raise self.error(f"`{which}()` takes one expression, e.g. "
                             f"{which}(close > sma(close,30))", node.span)
        inner = self.check(node.args[0], which)
        if inner.type == "string":
            raise self.error(f"`{which}()` needs a number or a condition", node.args[0].span)
        return replace(inner, span=node.span)

    def ta_call(self, node: Call, name: str, tf: str) -> Term:
        try:
            ta = catalog.ta_function(name)
        except ConfigError as e:  # TA-Lib is not installed: say how to install it, and where
            raise self.error(catalog.TALIB_HINT, node.func_span) from e
        if ta is None:
            raise self.error(f"TA-Lib has no function `{name}`", node.func_span,
                             [f"ta.{n}" for n in _closest(name, list(catalog.ta_names()))])
        output = self.ta_output(node, ta)
        bound = self.bind(node, f"ta.{ta.name}", ta.params)
        term = self.build(node, f"ta.{ta.name}", ta.params, bound, "number", True,
                          ta.lookback, tf, output)
        return term

    def ta_output(self, node: Call, ta: TaFunction) -> str | None:
        outs = [o.lower() for o in ta.outputs]
        if node.output is None:
            if len(outs) > 1:
                raise self.error(f"`ta.{ta.name}` has several outputs: add one of "
                                 f"{', '.join('.' + o for o in outs)}", node.span)
            return None
        if node.output.lower() not in outs:
            raise self.error(f"`ta.{ta.name}` has no output `{node.output}`", node.span,
                             [o for o in _closest(node.output, outs)])
        return node.output.lower() if len(outs) > 1 else None

    def bind(self, node: Call, fname: str, params: tuple[Param, ...]) -> dict[str, Node]:
        """Arguments by parameter name. A number literal where a defaulted series comes first
        skips it, so ``sma(50)`` is ``sma(close,50)``."""
        bound: dict[str, Node] = {}
        positional = [p for p in params if not p.keyword_only]
        i = 0
        for a in node.args:
            while (i < len(positional) and positional[i].kind == "series"
                   and not positional[i].required and not isinstance(_lit(a), Node)):
                i += 1
            if i >= len(positional):
                names = ", ".join(p.name for p in positional) or "no arguments"
                raise self.error(f"too many arguments: `{fname}` takes ({names})", a.span)
            bound[positional[i].name] = a
            i += 1
        by_name = {p.name: p for p in params}
        for kw in node.kwargs:
            if kw.name not in by_name:
                raise self.error(f"`{fname}` has no argument `{kw.name}`", kw.span,
                                 _closest(kw.name, list(by_name)))
            if kw.name in bound:
                raise self.error(f"argument `{kw.name}` of `{fname}` is given twice", kw.span)
            bound[kw.name] = kw.value
        for p in params:
            if p.name not in bound and p.required:
                raise self.error(f"`{fname}` needs its argument `{p.name}`", node.span)
        return bound

    def build(self, node: Call, fname: str, params: tuple[Param, ...], bound: dict[str, Node],
              returns: Kind, windowed: bool, lookback: Any, tf: str,
              output: str | None = None) -> Term:
        args: list[Term] = []
        values: list[tuple[str, ParamValue]] = []
        items: list[tuple[str, str]] = []  # (parameter, text) in catalogue order
        keyword = {p.name for p in params if p.keyword_only}
        for p in params:
            given = bound.get(p.name)
            if p.kind in ("series", "condition"):
                if given is None:
                    if p.default not in FIELDS:  # e.g. MAVP's `periods`: no such field
                        raise self.error(f"`{fname}` needs its argument `{p.name}`", node.span)
                    t = self.check(Name(str(p.default), node.span), tf)
                else:
                    t = self.check(given, tf)
                want: Kind = "bool" if p.kind == "condition" else "number"
                self.want(t, want, given.span if given else node.span,
                          f"argument `{p.name}` of `{fname}`")
                if windowed and t.latest:
                    raise self.error(f"`{t.key}` exists for the latest session only; "
                                     f"`{fname}` needs its history (use the function, e.g. "
                                     "rsi(close,14))", t.span)
                args.append(t)
                items.append((p.name, child(t, tf)))
                continue
            v = self.param(p, given, fname)
            values.append((p.name, v))
            if p.keyword_only:
                if v is not None:
                    items.append((p.name, f"{p.name}={literal(v)}"))
            else:
                items.append((p.name, literal(v)))
        lb = int(lookback(dict(values)))
        if lb < 0:
            raise self.error(f"TA-Lib rejects these parameters of `{fname}`", node.span)
        if any(a.op == "const" for a in args):
            # `sma(1,5)` would re-read as sma(close,1,5): a literal series is spelled by name
            texts = [t if n in keyword else f"{n}={t}" for n, t in items]
        else:
            texts = [t for _, t in items]
        body = f"{fname}({','.join(texts)})" + (f".{output}" if output else "")
        return self.derived("call", returns, body, tuple(args), tf, node.span,
                            params=tuple(values), name=fname, output=output, extra=lb)

    def param(self, p: Param, given: Node | None, fname: str) -> ParamValue:
        if given is None:
            return p.default
        what = f"argument `{p.name}` of `{fname}`"
        if p.kind == "window":
            return float(self.whole(given, max(1, int(p.minimum)), what))
        if p.kind == "int":
            return float(self.whole(given, int(p.minimum), what))
        v = _lit(given)
        if p.kind == "number":
            if isinstance(v, bool) or not isinstance(v, float):
                raise self.error(f"{what} must be a number literal", given.span)
            return v
        if not isinstance(v, str) or v.lower() not in p.choices:
            choices = " or ".join(f'"{c}"' for c in p.choices)
            raise self.error(f"{what} must be {choices}", given.span)
        return v.lower()

    def whole(self, node: Node, minimum: int, what: str) -> int:
        v = _lit(node)
        ok = isinstance(v, float) and v == int(v) and minimum <= v <= limits.MAX_WINDOW
        if not ok:
            raise self.error(f"{what} must be a whole number from {minimum} to "
                             f"{limits.MAX_WINDOW:,}", node.span)
        return int(v)  # type: ignore[arg-type]

    # --- helpers ----------------------------------------------------------------------------
    def want(self, t: Term, kind: Kind, span: Span, where: str) -> None:
        if t.type != kind:
            raise self.error(f"{where} needs {_KIND_WORD[kind]}; `{_source(self.text, span)}` "
                             f"is {_word(t)}", span)

    def derived(self, op: str, kind: Kind, body: str, args: tuple[Term, ...], tf: str,
                span: Span, params: tuple[tuple[str, ParamValue], ...] = (), name: str = "",
                output: str | None = None, extra: int = 0) -> Term:
        # A daily parent reads a weekly/monthly child in sessions, not in its bars.
        own = [a.lookback if a.timeframe == tf or a.op == "const" else a.sessions - 1
               for a in args]
        return Term(op, name or op, kind, body, args, params, output,
                    lookback=extra + max(own, default=0), latest=any(a.latest for a in args),
                    timeframe=tf, span=span)


def _source(text: str, span: Span) -> str:
    s = span.text(text)
    return s if len(s) <= 40 else s[:37] + "..."


def _closest(name: str, candidates: Sequence[str]) -> list[str]:
    by_low: dict[str, str] = {}
    for c in candidates:
        by_low.setdefault(c.lower(), c)
    return [by_low[m] for m in difflib.get_close_matches(name.lower(), list(by_low), n=3,
                                                         cutoff=0.6)]
