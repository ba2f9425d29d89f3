"""``compile(text) -> Screen``: parse, check, and list what a scan must compute for a screen."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from technic_v4.terms.catalog import Kind
from technic_v4.terms.language import limits
from technic_v4.terms.language.ast import Node
from technic_v4.terms.language.check import Checker
from technic_v4.terms.language.errors import ScreenError
from technic_v4.terms.language.keys import Term
from technic_v4.terms.language.parser import parse

_WANT = {"bool": "a condition (true/false)", "number": "a number", "string": "a string"}


@dataclass(frozen=True)
class Clause:
    """One top-level ``and`` clause of a screen: its source text and its term."""

    text: str
    term: Term

    @property
    def key(self) -> str:
        return self.term.key


@dataclass(frozen=True)
class Screen:
    """A checked screen.

    ``term`` is the checked root; ``clauses`` its top-level conjunction split into clauses (for
    Matched / Failed); ``terms`` every distinct subterm other than literals, children before
    parents (one computation per key); ``bars`` the daily sessions the screen needs (the longest
    need of any term: lookback + 1, weekly terms 5 and monthly 22 sessions per bar plus one
    period, x[n] adding n)."""

    text: str
    syntax: Node
    term: Term
    clauses: tuple[Clause, ...]
    terms: tuple[Term, ...]
    bars: int

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(t.key for t in self.terms)

    @property
    def type(self) -> Kind:
        return self.term.type


@lru_cache(maxsize=4096)
def compile(text: str, field: str = "where", want: Kind | None = None) -> Screen:
    """Parse and check ``text``; ``want`` is the type the caller needs (``"bool"`` for a
    ``where``, ``"number"`` for a sort key). Cached by its arguments. Raises
    :class:`~technic_v4.terms.language.errors.ScreenError` (a ConfigError)."""
    syntax = parse(text, field)
    checker = Checker(text, field)
    term = checker.check(syntax)
    if want is not None and term.type != want:
        raise checker.error(f"the expression must be {_WANT[want]}; this one is "
                            f"{_WANT[term.type]}", term.span)
    distinct: dict[str, Term] = {}
    for t in term.walk():
        if t.op != "const" and t.key not in distinct:
            distinct[t.key] = t
            if len(distinct) > limits.MAX_TERMS:
                raise checker.error(f"the screen has more than {limits.MAX_TERMS} distinct "
                                    "terms; split it", t.span)
    clauses = tuple(Clause(c.span.text(text), c) for c in _conjuncts(term))
    bars = max((t.sessions for t in distinct.values()), default=1)
    return Screen(text, syntax, term, clauses, tuple(distinct.values()), bars)


def _conjuncts(term: Term) -> list[Term]:
    """The operands of the top-level ``and`` chain, left to right."""
    out: list[Term] = []
    stack = [term]
    while stack:
        t = stack.pop()
        if t.op == "and" and t.timeframe == "daily":
            stack.extend((t.args[1], t.args[0]))
        else:
            out.append(t)
    return out


__all__ = ["Clause", "Screen", "ScreenError", "compile"]
