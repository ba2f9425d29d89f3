"""Syntax tree of a screen: small frozen dataclasses, each with its source span.

The parser builds these from the text; :mod:`.check` resolves names and types and turns them into
:class:`~technic_v4.terms.language.check.Term` nodes. Spans do not take part in equality, so two
trees that say the same thing compare equal wherever they were written.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """Where a node was written: 1-based line and column of its first character, and of the
    character just after its last one; ``start``/``end`` are 0-based offsets into the text."""

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int

    def text(self, source: str) -> str:
        return source[self.start:self.end]


_NOWHERE = Span(1, 1, 1, 1, 0, 0)


@dataclass(frozen=True)
class Number:
    value: float
    text: str = field(default="", compare=False)
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class String:
    value: str
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    """A field (``close``) or a scan output column (``RSI14``), as written."""

    name: str
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Keyword:
    """A keyword argument ``name=value`` in a call."""

    name: str
    value: Node
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    """``func(args…)``, ``ta.func(args…)`` or ``ta.func(args…).output``."""

    func: str
    args: tuple[Node, ...]
    kwargs: tuple[Keyword, ...] = ()
    output: str | None = None
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    func_span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Unary:
    """``-x`` (op ``"-"``) or ``not x`` (op ``"not"``)."""

    op: str
    operand: Node
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Binary:
    """``+ - * /``, comparisons, ``and``, ``or``."""

    op: str
    left: Node
    right: Node
    span: Span = field(default=_NOWHERE, compare=False, repr=False)
    op_span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class In:
    """``x in (a, b, …)``."""

    operand: Node
    options: tuple[Node, ...]
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Index:
    """``x[n]``: the value ``n`` sessions ago."""

    operand: Node
    offset: Node
    span: Span = field(default=_NOWHERE, compare=False, repr=False)


Node = Number | String | Bool | Name | Call | Unary | Binary | In | Index
