"""The screen language's parser: every construct, and every syntax error with its exact caret."""

from __future__ import annotations

import pytest

from technic_v4.errors import ConfigError
from technic_v4.terms.language import ScreenError, limits
from technic_v4.terms.language.ast import (
    Binary,
    Bool,
    Call,
    In,
    Index,
    Keyword,
    Name,
    Number,
    String,
    Unary,
)
from technic_v4.terms.language.parser import parse


@pytest.mark.parametrize(("text", "value"), [
    ("1e6", 1e6), ("1_000_000", 1e6), ("2.5", 2.5), (".5", 0.5), ("2.", 2.0), ("1.5e-3", 0.0015),
    ("0", 0.0), ("1E+2", 100.0),
])
def test_numbers(text: str, value: float) -> None:
    assert parse(text) == Number(value)


@pytest.mark.parametrize(("text", "value"), [
    ('"Energy"', "Energy"), ("'Health Care'", "Health Care"), (r'"say \"hi\""', 'say "hi"'),
    ('""', ""),
])
def test_strings(text: str, value: str) -> None:
    assert parse(text) == String(value)


def test_booleans_and_keywords_are_case_insensitive() -> None:
    assert parse("TRUE") == Bool(True)
    assert parse("false") == Bool(False)
    assert parse("a AND NOT b Or c") == parse("a and not b or c")
    # a name that starts with a keyword is a name
    assert parse("android and order") == Binary("and", Name("android"), Name("order"))


def test_precedence() -> None:
    one, two, three = Number(1), Number(2), Number(3)
    assert parse("1 + 2 * 3") == Binary("+", one, Binary("*", two, three))
    assert parse("(1 + 2) * 3") == Binary("*", Binary("+", one, two), three)
    assert parse("1 - 2 - 3") == Binary("-", Binary("-", one, two), three)
    assert parse("-1 * 2") == Binary("*", Unary("-", one), two)
    assert parse("not a and b or c") == Binary(
        "or", Binary("and", Unary("not", Name("a")), Name("b")), Name("c"))
    assert parse("a or b and c") == Binary("or", Name("a"), Binary("and", Name("b"), Name("c")))
    assert parse("not close > 1") == Unary("not", Binary(">", Name("close"), one))


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons(op: str) -> None:
    assert parse(f"close {op} 1") == Binary(op, Name("close"), Number(1))


def test_in_between_index_calls() -> None:
    assert parse('sector in ("A", "B",)') == In(Name("sector"), (String("A"), String("B")))
    assert parse("between(x, 1, 2)") == Call("between", (Name("x"), Number(1), Number(2)))
    assert parse("close[3]") == Index(Name("close"), Number(3))
    assert parse("sma(close, 50)[1]") == Index(Call("sma", (Name("close"), Number(50))),
                                              Number(1))
    assert parse("obv()") == Call("obv", ())
    assert parse('rank(x, by="sector")') == Call(
        "rank", (Name("x"),), (Keyword("by", String("sector")),))
    assert parse("ta.kama(close, 30)") == Call("ta.kama", (Name("close"), Number(30)))
    assert parse("ta.aroon(14).aroonup") == Call("ta.aroon", (Number(14),), (), "aroonup")
    assert parse("weekly(close > sma(close, 30))") == Call(
        "weekly", (Binary(">", Name("close"), Call("sma", (Name("close"), Number(30)))),))
    assert parse("monthly(close)") == Call("monthly", (Name("close"),))
    assert parse("cdl_engulfing()") == Call("cdl_engulfing", ())


def test_comments_and_lines() -> None:
    node = parse("# header\nclose > 1   # price\nand volume > 2\n")
    assert node == Binary("and", Binary(">", Name("close"), Number(1)),
                          Binary(">", Name("volume"), Number(2)))
    assert node.span.line == 2 and node.span.end_line == 3


def test_spans() -> None:
    node = parse("close >  sma( close,50 )")
    assert isinstance(node, Binary)
    assert (node.right.span.line, node.right.span.column, node.right.span.end_column) == (1, 10, 25)
    assert node.op_span.column == 7
    paren = parse("(close)")
    assert paren == Name("close") and (paren.span.column, paren.span.end_column) == (1, 8)


def _err(text: str) -> ScreenError:
    with pytest.raises(ScreenError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(("text", "message", "line", "column", "caret"), [
    ("close > ", "the expression ends too early", 1, 9, "close > \n        ^"),
    ("close $ 4", "unexpected character `$`", 1, 7, "close $ 4\n      ^"),
    ("a < b < c", "comparisons do not chain", 1, 7, "a < b < c\n      ^"),
    ("close = 5", "compare with `==`", 1, 7, "close = 5\n      ^"),
    ("sma(close,, 5)", "unexpected `,`", 1, 11, "sma(close,, 5)\n          ^"),
    ("close >\n  )", "unexpected `)`", 2, 3, "  )\n  ^"),
    ("sma(1, n=2, 3)", "a positional argument cannot follow a keyword argument", 1, 13,
     "sma(1, n=2, 3)\n            ^"),
    ("sma(5).x", "only `ta.` functions have named outputs", 1, 8, "sma(5).x\n       ^"),
    ("", "the expression is empty", 1, 1, "\n^"),
    ("# only a comment", "the expression is empty", 1, 1, "# only a comment\n^"),
    ('sector == "Energy', "unexpected character `\"`", 1, 11,
     'sector == "Energy\n          ^'),
])
def test_syntax_errors(text: str, message: str, line: int, column: int, caret: str) -> None:
    e = _err(text)
    assert isinstance(e, ConfigError) and e.field == "where"
    assert message in str(e)
    assert (e.line, e.column) == (line, column)
    assert e.caret == caret
    assert f"at line {line}, column {column}" in str(e) and "\n" not in str(e)
    d = e.as_dict()
    assert d["line"] == line and d["column"] == column and d["caret"] == caret


def test_field_name_in_errors() -> None:
    with pytest.raises(ScreenError, match=r"^sort_by: unexpected"):
        parse("close >> 1", field="sort_by")


def test_length_limit() -> None:
    ok = "close > 0." + "1" * (limits.MAX_TEXT - len("close > 0."))  # a long, finite number
    assert len(ok) == limits.MAX_TEXT
    parse(ok)
    e = _err(ok + "1")
    assert "4,001 characters" in str(e) and e.column == limits.MAX_TEXT + 1


def test_depth_limit_counts_parentheses_calls_and_not() -> None:
    n = limits.MAX_DEPTH - 1  # n parentheses around a number: depth n + 1
    parse("(" * n + "1" + ")" * n)
    e = _err("(" * (n + 1) + "1" + ")" * (n + 1))
    assert "nests deeper than 32" in str(e) and e.column == 1
    parse("not " * n + "true")
    _err("not " * (n + 1) + "true")
    parse("sma(" * n + "1" + ")" * n)
    _err("sma(" * (n + 1) + "1" + ")" * (n + 1))


def test_long_chains_are_one_level_and_do_not_recurse() -> None:
    # 1,990 operands: deeper than Python's recursion limit if each were a nesting level.
    node = parse("+".join(["1"] * 1990))
    assert isinstance(node, Binary) and node.op == "+"
    parse(" and ".join(["a"] * 660))


def test_deep_input_is_an_error_not_a_recursion_error() -> None:
    for text in ("(" * 1900 + "1" + ")" * 1900, "-" * 3900 + "1", "sma(" * 900 + ")" * 900):
        _err(text)
