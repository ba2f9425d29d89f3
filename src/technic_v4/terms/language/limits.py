"""Bounds on a screen, in one place: what a request may ask of the parser and the engine."""

MAX_TEXT = 4_000  # characters in one expression
MAX_DEPTH = 32  # nesting depth of the syntax tree
MAX_TERMS = 200  # distinct terms (subexpressions other than literals) in one screen
MAX_WINDOW = 5_000  # sessions in any window length or x[n] offset
