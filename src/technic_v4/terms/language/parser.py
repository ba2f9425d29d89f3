"""Text → syntax tree, with lark (LALR, grammar in ``grammar.lark``). Never eval/exec.

lark builds its parse tree without recursion; its depth is bounded before the tree is transformed
(recursively) into :mod:`.ast` nodes, and the transformer counts nesting exactly against
:data:`~technic_v4.terms.language.limits.MAX_DEPTH` (parentheses, calls, ``not`` and ``-`` each
add a level; a chain ``a and b and c`` is one). Every error is a
:class:`~technic_v4.terms.language.errors.ScreenError` with the position at fault.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args

from technic_v4.terms.language import limits
from technic_v4.terms.language.ast import (
    Binary,
    Bool,
    Call,
    In,
    Index,
    Keyword,
    Name,
    Node,
    Number,
    Span,
    String,
    Unary,
)
from technic_v4.terms.language.errors import ScreenError

_FRIENDLY = {
    "NUMBER": "a number", "STRING": "a string", "NAME": "a name", "LPAR": "`(`", "RPAR": "`)`",
    "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "DOT": "`.`", "EQUAL": "`=`", "MINUS": "`-`",
    "COMP_OP": "a comparison", "ADD_OP": "`+` or `-`", "MUL_OP": "`*` or `/`", "_AND": "`and`",
    "_OR": "`or`", "_NOT": "`not`", "_IN": "`in`", "_TRUE": "`true`", "_FALSE": "`false`",
    "$END": "the end",
}


def span_at(text: str, offset: int, length: int = 1) -> Span:
    """The span of ``length`` characters from ``offset`` (may point just past the end)."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(line, column, line, column + max(length, 1), offset, offset + length)


def _tok_span(tok: Token) -> Span:
    return Span(tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1,
                tok.start_pos or 0, tok.end_pos or 0)


def _meta_span(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos,
                meta.end_pos)


def _between(a: Node, b: Node) -> Span:
    """The span between two operands (where the keyword `and` / `or` stands)."""
    return Span(a.span.end_line, a.span.end_column, b.span.line, b.span.column, a.span.end,
                b.span.start)


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


@v_args(meta=True)
class _Build(Transformer[Token, Node]):
    """Turns lark's parse tree into :mod:`.ast` nodes, counting nesting depth on the way."""

    def __init__(self, text: str, field: str) -> None:
        super().__init__()
        self.text = text
        self.field = field
        self.depth: dict[int, int] = {}

    def _node(self, node: Any, *children: Any) -> Any:
        d = 1 + max((self.depth.get(id(c), 1) for c in children), default=0)
        if d > limits.MAX_DEPTH:
            raise ScreenError(self.field, _too_deep(), self.text, node.span)
        self.depth[id(node)] = d
        return node

    def number(self, meta: Any, ch: list[Token]) -> Node:
        value = float(ch[0].replace("_", ""))
        if not math.isfinite(value):  # 1e309: beyond float64
            shown = ch[0] if len(ch[0]) <= 24 else ch[0][:20] + "…"
            raise ScreenError(self.field, f"the number {shown} is too large (beyond "
                              "±1.8e308, the range of a float64)", self.text, _meta_span(meta))
        return self._node(Number(value, str(ch[0]), _meta_span(meta)))

    def string(self, meta: Any, ch: list[Token]) -> Node:
        return self._node(String(_unescape(ch[0][1:-1]), _meta_span(meta)))

    def true(self, meta: Any, ch: list[Token]) -> Node:
        return self._node(Bool(True, _meta_span(meta)))

    def false(self, meta: Any, ch: list[Token]) -> Node:
        return self._node(Bool(False, _meta_span(meta)))

    def name(self, meta: Any, ch: list[Token]) -> Node:
        return self._node(Name(str(ch[0]), _meta_span(meta)))

    def paren(self, meta: Any, ch: list[Node]) -> Node:
        # The parenthesised node keeps its kind; its span widens to the parentheses, and the
        # parentheses count as one level of nesting.
        inner = ch[0]
        return self._node(replace(inner, span=_meta_span(meta)), inner)

    def neg(self, meta: Any, ch: list[Node]) -> Node:
        return self._node(Unary("-", ch[0], _meta_span(meta)), ch[0])

    def not_(self, meta: Any, ch: list[Node]) -> Node:
        return self._node(Unary("not", ch[0], _meta_span(meta)), ch[0])

    def _chain(self, operands: list[Node], ops: list[tuple[str, Span]]) -> Node:
        # Fold left; the chain counts as one level above its deepest operand.
        d = 1 + max(self.depth.get(id(c), 1) for c in operands)
        node = operands[0]
        for (op, op_span), right in zip(ops, operands[1:], strict=True):
            first = operands[0].span
            span = Span(first.line, first.column, right.span.end_line, right.span.end_column,
                        first.start, right.span.end)
            node = Binary(op, node, right, span, op_span)
        if d > limits.MAX_DEPTH:
            raise ScreenError(self.field, _too_deep(), self.text, node.span)
        self.depth[id(node)] = d
        return node

    def sum(self, meta: Any, ch: list[Any]) -> Node:
        return self._chain(ch[::2], [(str(t), _tok_span(t)) for t in ch[1::2]])

    product = sum

    def compare(self, meta: Any, ch: list[Any]) -> Node:
        return self._chain([ch[0], ch[2]], [(str(ch[1]), _tok_span(ch[1]))])

    def and_expr(self, meta: Any, ch: list[Node]) -> Node:
        return self._chain(ch, [("and", _between(ch[i], ch[i + 1])) for i in range(len(ch) - 1)])

    def or_expr(self, meta: Any, ch: list[Node]) -> Node:
        return self._chain(ch, [("or", _between(ch[i], ch[i + 1])) for i in range(len(ch) - 1)])

    def in_(self, meta: Any, ch: list[Node | None]) -> Node:
        options = tuple(c for c in ch[1:] if c is not None)
        return self._node(In(ch[0], options, _meta_span(meta)), *ch)  # type: ignore[arg-type]

    def index(self, meta: Any, ch: list[Node]) -> Node:
        return self._node(Index(ch[0], ch[1], _meta_span(meta)), *ch)

    def kwarg(self, meta: Any, ch: list[Any]) -> Any:
        return self._node(Keyword(str(ch[0]).lower(), ch[1], _meta_span(meta)), ch[1])

    def callee(self, meta: Any, ch: list[Token | None]) -> Any:
        func = ".".join(str(t) for t in ch if t is not None)
        return (func, _meta_span(meta))

    def call(self, meta: Any, ch: list[Any]) -> Node:
        func, func_span = ch[0]
        output = ch[-1]
        args: list[Node] = []
        kwargs: list[Keyword] = []
        for a in ch[1:-1]:
            if a is None:
                continue
            if isinstance(a, Keyword):
                kwargs.append(a)
            elif kwargs:
                raise ScreenError(self.field, "a positional argument cannot follow a keyword "
                                  "argument", self.text, a.span)
            else:
                args.append(a)
        if output is not None and not func.lower().startswith("ta."):
            raise ScreenError(self.field, f"only `ta.` functions have named outputs "
                              f"(`.{output}`)", self.text, _tok_span(output))
        node = Call(func, tuple(args), tuple(kwargs), None if output is None else str(output),
                    _meta_span(meta), func_span)
        return self._node(node, *args, *(k.value for k in kwargs))


@cache
def _grammar() -> str:
    return resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")


def _too_deep() -> str:
    return f"the expression nests deeper than {limits.MAX_DEPTH} levels; simplify it"


@cache
def _lark() -> Lark:
    return Lark(_grammar(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str, field: str = "where") -> Node:
    """Parse ``text`` into a syntax tree; :class:`ScreenError` on bad input."""
    if len(text) > limits.MAX_TEXT:
        raise ScreenError(field, f"the expression is {len(text):,} characters long; at most "
                          f"{limits.MAX_TEXT:,} are allowed", text, span_at(text, limits.MAX_TEXT))
    if not re.sub(r"#[^\n]*", "", text).strip():
        raise ScreenError(field, "the expression is empty", text, span_at(text, 0))
    try:
        tree = _lark().parse(text)
    except lark.exceptions.UnexpectedCharacters as e:
        pos = e.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        raise ScreenError(field, f"unexpected character `{char}`", text,
                          span_at(text, pos)) from None
    except lark.exceptions.UnexpectedToken as e:
        raise _token_error(field, text, e) from None
    except lark.exceptions.UnexpectedEOF as e:
        raise ScreenError(field, f"the expression ends too early{_expected(e.expected)}", text,
                          span_at(text, len(text))) from None
    # lark builds the tree without recursion but transforms it recursively: bound the depth
    # first (a parse-tree level is at most two syntax levels), so deep input is an error, not a
    # RecursionError; the transformer then names the exact node.
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        t, d = stack.pop()
        if d > 2 * limits.MAX_DEPTH + 4:
            raise ScreenError(field, _too_deep(), text, _meta_span(t.meta))
        stack.extend((c, d + 1) for c in t.children if isinstance(c, lark.Tree))
    if not isinstance(tree, lark.Tree):  # a lone token cannot be the start symbol's tree
        raise ScreenError(field, "not an expression", text, span_at(text, 0))
    try:
        return _Build(text, field).transform(tree)
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, ScreenError):
            raise e.orig_exc from None
        raise


def _expected(expected: Any) -> str:
    names = sorted({_FRIENDLY.get(str(x), f"`{x}`") for x in expected or ()})
    if not names or len(names) > 6:
        return ""
    return "; expected " + ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]


def _token_error(field: str, text: str, e: lark.exceptions.UnexpectedToken) -> ScreenError:
    tok = e.token
    if tok.type == "$END":
        return ScreenError(field, f"the expression ends too early{_expected(e.expected)}", text,
                           span_at(text, len(text)))
    what = f"`{tok}`"
    hint = _expected(e.expected)
    if tok.type == "COMP_OP" and "COMP_OP" not in e.expected:
        hint = "; comparisons do not chain: write `a < b and b < c`"
    elif tok.type == "EQUAL":
        hint = "; compare with `==`"
    return ScreenError(field, f"unexpected {what}{hint}", text, _tok_span(tok))
