"""The one error a screen raises: a :class:`~technic_v4.errors.ConfigError` that knows where.

``str(err)`` is one line (``where: unknown name `smaa` at line 1, column 9; did you mean `sma`?``);
``err.caret`` is the source line with carets under the characters at fault, for the CLI and the
web page; :meth:`ScreenError.as_dict` is what HTTP answers with its 422.
"""

from __future__ import annotations

from typing import Any

from technic_v4.errors import ConfigError
from technic_v4.terms.language.ast import Span


class ScreenError(ConfigError):
    """A screen that cannot be parsed or checked; ``line``/``column`` are 1-based."""

    def __init__(self, field: str, message: str, text: str, span: Span,
                 suggestions: tuple[str, ...] = ()) -> None:
        hint = f"; did you mean {' or '.join(f'`{s}`' for s in suggestions)}?" if suggestions else ""
        super().__init__(field, f"{message} at line {span.line}, column {span.column}{hint}")
        self.reason = message
        self.text = text
        self.span = span
        self.line = span.line
        self.column = span.column
        self.suggestions = suggestions
        self.caret = caret(text, span)

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (jobs, Ray tasks) although the constructor takes more than the message.
        return (ScreenError, (self.field, self.reason, self.text, self.span, self.suggestions))

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": str(self), "line": self.line,
                "column": self.column, "end_line": self.span.end_line,
                "end_column": self.span.end_column, "caret": self.caret,
                "suggestions": list(self.suggestions)}


def caret(text: str, span: Span) -> str:
    """The line of ``text`` that ``span`` starts on, and under it ``^`` marks to the span's end
    (or to the end of that line; one mark at least, also past the end of the text)."""
    lines = text.split("\n")
    src = lines[span.line - 1] if span.line - 1 < len(lines) else ""
    src = src.replace("\t", " ")
    end = span.end_column if span.end_line == span.line else len(src) + 1
    width = max(1, end - span.column)
    return f"{src}\n{' ' * (span.column - 1)}{'^' * width}"
