"""Checked terms and their canonical keys.

A :class:`Term` is one node of a checked screen: what it computes (``op``, ``name``, series
``args``, literal ``params``), its type, and how many bars it needs. Its ``key`` is canonical:
names in their catalogue spelling, every default argument spelled out, numbers printed one way,
no spaces, binary operations fully parenthesised, ``x[0]`` as ``x``, ``in`` options sorted. So
``sma(close,50)``, ``SMA( close , 50 )`` and ``sma(50)`` share the key ``sma(close,50)`` and are
computed once per scan. A term evaluated on weekly or monthly bars carries that timeframe in its
key (``weekly(sma(close,30))``), so it never collides with the daily term of the same body.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from technic_v4.terms.catalog import TIMEFRAME_SESSIONS, Kind
from technic_v4.terms.language.ast import Span

Lit = float | str | bool | None
ParamValue = Lit | tuple[Lit, ...]

DAILY = "daily"


def literal(value: ParamValue) -> str:
    """The canonical text of a literal: ``50`` for 50.0 and 5e1, ``0.5``, ``"Energy"``, ``true``."""
    if isinstance(value, tuple):
        return ",".join(literal(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True, eq=False)
class Term:
    """One checked node. ``op`` is ``const``, ``field`` (open … symbol), ``column`` (a scan
    output column, latest session only), ``call``, ``neg``, ``not``, ``+ - * /``, a comparison,
    ``and``, ``or``, ``in`` or ``index``. ``lookback`` counts bars of the term's own timeframe
    before the latest one; ``latest`` marks values that exist only for the latest session."""

    op: str
    name: str
    type: Kind
    body: str
    args: tuple[Term, ...] = ()
    params: tuple[tuple[str, ParamValue], ...] = ()
    output: str | None = None
    value: Lit = None
    lookback: int = 0
    latest: bool = False
    timeframe: str = DAILY
    span: Span = field(default=Span(1, 1, 1, 1, 0, 0), repr=False)

    @property
    def key(self) -> str:
        if self.timeframe == DAILY or self.op == "const":
            return self.body
        return f"{self.timeframe}({self.body})"

    @property
    def sessions(self) -> int:
        """Daily sessions this term needs: ``lookback + 1`` bars of its timeframe, and for weekly
        or monthly bars one more period, so the oldest bar used is complete (5 or 22 sessions
        per period; the engine checks against the calendar)."""
        if self.timeframe == DAILY:
            return self.lookback + 1
        return TIMEFRAME_SESSIONS[self.timeframe] * (self.lookback + 2)

    @property
    def param(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def walk(self) -> Iterator[Term]:
        """This term and every term under it, children before parents."""
        # Iterative: a long chain `a + b + c + …` is a deep tree.
        stack: list[tuple[Term, bool]] = [(self, False)]
        while stack:
            term, expanded = stack.pop()
            if expanded:
                yield term
            else:
                stack.append((term, True))
                stack.extend((a, False) for a in reversed(term.args))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Term) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.key


def child(term: Term, timeframe: str) -> str:
    """How a parent of ``timeframe`` prints ``term``: its body inside the same timeframe, its key
    across timeframes."""
    return term.body if term.timeframe == timeframe or term.op == "const" else term.key


def binary(op: str, left: str, right: str) -> str:
    return f"({left} {op} {right})" if op in ("and", "or") else f"({left}{op}{right})"
