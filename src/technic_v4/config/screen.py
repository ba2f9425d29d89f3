"""What a ScanConfig asks of the screen stage: its ``where`` (and ``preset``), ``columns`` and
``sort_by`` compiled once (cached by their text) into one :class:`ScreenSpec`.

A preset and a ``where`` combine by ``and``: their top-level clauses are listed one after the
other (a side whose top level is an ``or`` stays one clause), so ``Matched``/``Failed`` name the
clauses of both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from technic_v4.errors import ConfigError
from technic_v4.terms.language import Screen, Term, compile
from technic_v4.terms.presets import preset as get_preset

MAX_COLUMNS = 64  # user columns in one scan
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Output columns the screen stage itself adds (never a user column's name).
SCREEN_COLUMNS = ("Matched", "Failed")


@dataclass(frozen=True)
class ScreenSpec:
    """The compiled screen of one scan. ``where`` is ``None`` without a where or preset;
    ``sort_column`` names a user column when ``sort_by`` is one, else ``sort`` is compiled."""

    where: Screen | None
    columns: tuple[tuple[str, Screen], ...]
    sort: Screen | None
    sort_column: str | None
    bars: int  # daily sessions the longest term needs (1 without a screen)
    parts: tuple[tuple[str, Screen], ...]  # (field, its screen): preset, where, columns, sort_by

    def longest(self) -> tuple[str, Term] | None:
        """The field and term needing the most sessions (named when the store holds fewer)."""
        best: tuple[str, Term] | None = None
        for name, s in self.parts:
            for t in s.terms:
                if best is None or t.sessions > best[1].sessions:
                    best = (name, t)
        return best

    @property
    def active(self) -> bool:
        return self.where is not None or bool(self.columns) or self.sort_by_set

    @property
    def sort_by_set(self) -> bool:
        return self.sort is not None or self.sort_column is not None


_COMMENT = re.compile(r'("(?:[^"\\]|\\.)*")|#[^\n]*')


def clause_text(text: str) -> str:
    """A clause as Matched/Failed show it: its source without comments, blanks collapsed."""
    return " ".join(_COMMENT.sub(lambda m: m.group(1) or "", text).split())


def check_column_name(name: str, builtin: tuple[str, ...]) -> None:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigError(f"columns.{name}", "a column name must be an identifier (letters, "
                          "digits and _, not starting with a digit)")
    taken = {c.casefold(): c for c in (*builtin, *SCREEN_COLUMNS)}
    if name.casefold() in taken:
        raise ConfigError(f"columns.{name}", f"clashes with the built-in column "
                          f"{taken[name.casefold()]!r}; choose another name")


def where_text(where: str | None, preset: str | None) -> str | None:
    """The screen text a scan evaluates: the preset's expression and ``where`` joined by
    ``and`` (each side in parentheses only when its top level is an ``or``)."""
    if preset is None:
        return where
    parts: list[str] = []
    if preset is not None:
        parts.append(_conjunct(get_preset(preset).expression, "preset"))
    if where is not None:
        parts.append(_conjunct(where, "where"))
    if not parts:
        return None
    return "\nand ".join(parts)


def _conjunct(text: str, field: str) -> str:
    s = compile(text, field, "bool")
    # A trailing comment would swallow what follows: a newline ends it.
    end = "\n" if "#" in text else ""
    return f"({text}{end})" if s.term.op == "or" else f"{text}\n"


@lru_cache(maxsize=1024)
def spec(where: str | None, preset: str | None, columns: tuple[tuple[str, str], ...],
         sort_by: str | None) -> ScreenSpec:
    """Compile a scan's screen (cached); raises ScreenError/ConfigError naming the field."""
    text = where_text(where, preset)
    w = None if text is None else compile(text, "preset" if where is None else "where", "bool")
    cols = tuple((name, compile(expr, f"columns.{name}")) for name, expr in columns)
    sort = None
    sort_column = None
    if sort_by is not None:
        names = {n.casefold(): (n, s) for n, s in cols}
        hit = names.get(sort_by.strip().casefold())
        if hit is not None:
            if hit[1].type != "number":
                raise ConfigError("sort_by", f"column {hit[0]!r} is not a number; sort by a "
                                  "number")
            sort_column = hit[0]
        else:
            sort = compile(sort_by, "sort_by", "number")
    parts: list[tuple[str, Screen]] = []
    if preset is not None:
        parts.append(("preset", compile(get_preset(preset).expression, "preset", "bool")))
    if where is not None:
        parts.append(("where", compile(where, "where", "bool")))
    parts.extend((f"columns.{n}", c) for n, c in cols)
    if sort is not None:
        parts.append(("sort_by", sort))
    bars = max((s.bars for _, s in parts), default=1)
    return ScreenSpec(w, cols, sort, sort_column, bars, tuple(parts))
