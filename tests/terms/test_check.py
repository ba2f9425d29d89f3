"""The checker: names, did-you-mean, arguments, types and limits, each error with its caret."""

from __future__ import annotations

import pickle

import pytest

from technic_v4.errors import ConfigError
from technic_v4.pipeline import COLUMNS
from technic_v4.terms.language import ScreenError, compile, limits


def _err(text: str, want: str | None = "bool") -> ScreenError:
    with pytest.raises(ScreenError) as info:
        compile(text, want=want)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(("text", "message", "column", "caret", "suggestions"), [
    ("smaa(close, 5) > 1", "unknown function `smaa`", 1, "^^^^", ("sma",)),
    ("close > 1 and closee > 1", "unknown name `closee`", 15, " " * 14 + "^^^^^^", ("close",)),
    ("rsi14 > 1 and techratng > 5", "unknown name `techratng`", 15, " " * 14 + "^" * 9,
     ("TechRating",)),
    ("ta.kamma(close) > 1", "TA-Lib has no function `kamma`", 1, "^" * 8, ("ta.kama",)),
    ("rsi(close, peroid=3) > 1", "`rsi` has no argument `peroid`", 12, " " * 11 + "^" * 8, ()),
    ("rank(close, bye=\"sector\") > 1", "`rank` has no argument `bye`", 13,
     " " * 12 + "^" * 12, ("by",)),
    ("xyzzy > 1", "unknown name `xyzzy`", 1, "^^^^^", ()),
])
def test_unknown_names_and_did_you_mean(text: str, message: str, column: int, caret: str,
                                        suggestions: tuple[str, ...]) -> None:
    e = _err(text)
    assert message in str(e)
    assert e.column == column
    assert e.caret.split("\n")[1] == caret
    if suggestions:
        assert e.suggestions[: len(suggestions)] == suggestions
        assert f"did you mean `{suggestions[0]}`" in str(e)


def test_fields_and_columns_are_case_insensitive() -> None:
    assert compile("CLOSE > Sma(Close, 5)").term == compile("close > sma(close,5)").term
    assert compile("rsi14 < 30").terms[0].key == "RSI14"
    assert compile("TECHRATING >= 8").terms[0].key == "TechRating"
    assert compile('SIGNAL == "Buy"').term.key == '(Signal=="Buy")'
    # columns that are fields under another spelling resolve to the field
    assert compile("MarketCap > 1e9").term.key == "(market_cap>1000000000)"


def test_every_output_column_is_a_name() -> None:
    for c in COLUMNS:
        if c in ("LastDate", "Rank", "Rationale", "Matched"):  # a date, or made after the screen
            continue
        s = compile(c, want=None)
        assert s.term.op in ("field", "column")


@pytest.mark.parametrize("name", ["Rationale", "Matched", "Failed", "LastDate"])
def test_columns_made_after_the_screen_cannot_be_screened(name: str) -> None:
    with pytest.raises(ConfigError, match=f"`{name}` is an output column made after the screen"):
        compile(f"{name} == \"x\"")


@pytest.mark.parametrize(("text", "message", "column", "width"), [
    ("close and 5", "`and` needs a condition (true/false); `close` is a number", 1, 5),
    ("close > 1 and 5", "`and` needs a condition (true/false); `5` is a number", 15, 1),
    ("sector > 3", "`>` compares a string with a number", 8, 1),
    ('sector > "A"', "a string can only be compared with `==`, `!=` or `in`, not `>`", 8, 1),
    ("(close > 1) + 1", "`+` needs a number; `(close > 1)` is a condition", 1, 11),
    ("not close", "`not` needs a condition (true/false); `close` is a number", 5, 5),
    ('-sector == "A"', "`-` needs a number; `sector` is a string", 2, 6),
    ("sector in (1, 2)", "`in` compares a string with a number", 12, 1),
    ('close in ("A")', "`in` compares a number with a string", 11, 3),
    ("close in (open, 2)", "the options of `in` must be literal numbers or strings", 11, 4),
    ("(close > 1) in (1)", "`in` needs a number or a string on its left", 1, 11),
    ("sector[1] == \"A\"", "x[n] needs a number or a condition", 1, 6),
    ("sma(close > 1, 5) > 1", "argument `x` of `sma` needs a number", 5, 9),
    ("count(close, 5) > 1", "argument `cond` of `count` needs a condition", 7, 5),
    ("close", "the expression must be a condition (true/false); this one is a number", 1, 5),
])
def test_type_errors(text: str, message: str, column: int, width: int) -> None:
    e = _err(text)
    assert message in str(e)
    assert e.column == column
    assert e.caret.split("\n")[1] == " " * (column - 1) + "^" * width


def test_accepted_types() -> None:
    assert compile('sector == "Energy"').type == "bool"
    assert compile('sector in ("Energy", "Utilities") or exchange != "NYSE"').type == "bool"
    assert compile("(close > open) == true").type == "bool"
    assert compile("close / 0 > 1").type == "bool"  # division by zero is NaN at run time
    assert compile("sma(close, 5)", want="number").type == "number"
    assert compile("symbol", want=None).type == "string"


@pytest.mark.parametrize(("text", "message", "column"), [
    ("sma(close, 0) > 1", "argument `n` of `sma` must be a whole number from 1 to 5,000", 12),
    ("sma(close, 2.5) > 1", "must be a whole number", 12),
    ("sma(close, -3) > 1", "must be a whole number", 12),
    ("sma(close, 5001) > 1", "from 1 to 5,000", 12),
    ("rsi(close, 1) > 1", "argument `n` of `rsi` must be a whole number from 2 to 5,000", 12),
    ("sma(close, volume) > 1", "must be a whole number", 12),
    ("close[1.5] > 1", "the offset in x[n] must be a whole number from 0 to 5,000", 7),
    ("close[5001] > 1", "from 0 to 5,000", 7),
    ('rank(close, by="country") > 1', 'argument `by` of `rank` must be "sector" or "industry"',
     16),
    ("rank(close, by=3) > 1", "must be \"sector\" or \"industry\"", 16),
    ('bb_upper(close, 20, "2") > 1', "argument `k` of `bb_upper` must be a number literal", 21),
    ("sma(close, 5, 6) > 1", "too many arguments: `sma` takes (x, n)", 15),
    ("obv(close, 3) > 1", "too many arguments: `obv` takes (x)", 12),
    ("nr7(3) > 1", "too many arguments: `nr7` takes (no arguments)", 5),
    ("between(close, 1) ", "`between` needs its argument `hi`", 1),
    ("change(close) > 1", "`change` needs its argument `n`", 1),
    ("sma(n=3, n=4) > 1", "argument `n` of `sma` is given twice", 10),
    ("sma(5, n=4) > 1", "argument `n` of `sma` is given twice", 8),
    ("obv > 1", "`obv` is a function: call it, e.g. `obv()`", 1),
    ("close(5) > 1", "`close` is a field, not a function", 1),
    ("weekly(close, 2) > 1", "`weekly()` takes one expression", 1),
    ("monthly(weekly(close)) > 1", "`weekly()` cannot be used inside `monthly()`", 9),
    ("weekly(sector) == 1", "`weekly()` needs a number or a condition", 8),
    ("weekly(RSI14) > 1", "`RSI14` is a scan output column (latest session only); it has no "
     "weekly bars", 8),
    ("RSI14[1] > 3", "`RSI14` exists for the latest session only; x[n] needs a series", 1),
    ("sma(RSI14, 5) > 1", "`RSI14` exists for the latest session only; `sma` needs its history",
     5),
])
def test_argument_errors(text: str, message: str, column: int) -> None:
    e = _err(text)
    assert message in str(e)
    assert e.column == column


def test_latest_only_columns_work_where_no_history_is_needed() -> None:
    s = compile("between(RSI14, 30, 70) and rank(TechRating) > 90 and RSI14[0] > 1")
    assert [c.text for c in s.clauses] == ["between(RSI14, 30, 70)", "rank(TechRating) > 90",
                                           "RSI14[0] > 1"]
    assert all(t.latest for t in s.terms if "RSI14" in t.key or "TechRating" in t.key)


def test_ta_long_tail() -> None:
    s = compile("ta.aroon(14).aroonup > 70 and ta.kama(30) < close and ta.CCI(20) > 100")
    assert {"ta.aroon(14).aroonup", "ta.kama(close,30)", "ta.cci(20)"} <= s.keys
    assert compile("ta.sma(close, 5).real > 1").term == compile("ta.sma(close,5) > 1").term
    e = _err("ta.aroon(14) > 70")
    assert "`ta.aroon` has several outputs: add one of .aroondown, .aroonup" in str(e)
    e = _err("ta.aroon(14).up > 70")
    assert "`ta.aroon` has no output `up`" in str(e)
    e = _err("ta.sma(close, 0) > 1")
    assert "must be a whole number" in str(e)
    assert _err("ta.mavp() > 1").reason == "`ta.mavp` needs its argument `periods`"


def test_ta_without_talib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from technic_v4.terms import catalog

    real_import = builtins.__import__

    def no_talib(name: str, *args: object, **kwargs: object) -> object:
        if name == "talib" or name.startswith("talib."):
            raise ImportError("No module named 'talib'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    catalog.ta_function.cache_clear()
    catalog.ta_names.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_talib)
    try:
        e = _err("ta.kama(close, 31) > 1")
    finally:
        monkeypatch.undo()
        catalog.ta_function.cache_clear()
        catalog.ta_names.cache_clear()
    assert catalog.TALIB_HINT in str(e) and "pip install -e ." in str(e)
    assert e.column == 1 and e.caret.split("\n")[1] == "^" * 7


def test_terms_limit() -> None:
    n = limits.MAX_TERMS
    # each clause adds two distinct terms (sma(close,k) and the comparison), plus close
    ok = " and ".join(f"sma({k}) > 1" for k in range(1, 50))
    assert len(compile(ok).terms) <= n
    too_many = " or ".join(f"close > {k}" for k in range(n))
    e = _err(too_many)
    assert f"more than {n} distinct terms" in str(e)


def test_error_shape_for_http() -> None:
    e = _err("close > smaa(5)")
    d = e.as_dict()
    assert d == {"field": "where", "message": str(e), "line": 1, "column": 9, "end_line": 1,
                 "end_column": 13, "caret": "close > smaa(5)\n        ^^^^",
                 "suggestions": ["sma"]}
    assert isinstance(e, ValueError)  # ConfigError is a ValueError too
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.caret == e.caret and back.suggestions == e.suggestions
