"""Canonical keys, clauses, distinct terms and the bars a screen needs."""

from __future__ import annotations

import pytest

from technic_v4.indicators.compute import LOOKBACK
from technic_v4.terms.language import compile


def key(text: str) -> str:
    return compile(text, want=None).term.key


@pytest.mark.parametrize("group", [
    ["sma(close,50)", "SMA( close , 50 )", "sma(50)", "sma(x=close, n=50)", "sma(n=50)",
     "sma(close, 5e1)", "sma(close, 50.0)", "Sma(CLOSE,\n 50)", "(sma((close), 50))"],
    ["rsi()", "rsi(close, 14)", "RSI(14)", "rsi(n=14)"],
    ["macd()", "macd(close,12,26,9)", "macd(fast=12)", "macd(close, signal=9)"],
    ["bb_upper()", "bb_upper(close,20,2)", "bb_upper(close, 20, 2.0)", "bb_upper(k=2)"],
    ["stoch_k()", "stoch_k(5,3,3)", "stoch_k(slowd=3)"],
    ["atr()", "atr(14)", "ATR(n=14)"],
    ["close[0]", "close", "CLOSE", "Close"],
    ['sector in ("B", "A", "A")', "sector in ('A', 'B')", 'SECTOR IN ("A","B",)'],
    ['rank(close, by="Sector")', 'rank(close, by="sector")', "rank(close, BY='SECTOR')"],
    ["rank(close)", "RANK(close)"],
    ["1_000_000", "1e6", "1000000.0", "1_000_000.000"],
    ["-5", "-(5)", "(-5)", "-5.0"],
    ["close > 1 and volume > 2", "(close>1)AND(volume>2)", "close>1.0 and volume>2e0"],
    ["weekly(close > sma(close, 30))", "WEEKLY( close > sma(30) )"],
    ["ta.kama(close, 30)", "ta.KAMA(30)", "TA.kama()", "ta.kama(price=close)"],
    ["ta.aroon(14).aroonup", "ta.AROON().AroonUp"],
    ["cdl_morningstar()", "cdl_morningstar(0.3)", "CDL_MorningStar(penetration=0.3)"],
    ["dollar_volume", "Dollar_Volume"],
    ["MarketCap", "market_cap"],
])
def test_equal_keys(group: list[str]) -> None:
    keys = {key(t) for t in group}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(("a", "b"), [
    ("sma(close,50)", "sma(close,51)"), ("sma(close,50)", "ema(close,50)"),
    ("sma(close,50)", "sma(open,50)"), ("weekly(sma(close,30))", "sma(close,30)"),
    ("weekly(close)", "monthly(close)"),
    ("macd()", "macd_signal()"), ("close - open", "open - close"),
    ("close[1]", "close[2]"), ("(close + open) * 2", "close + open * 2"),
    ("rank(close)", 'rank(close, by="sector")'), ("1.5", "15"), ('"a"', '"A"'),
    ("cdl_morningstar()", "cdl_morningstar(0.5)"), ("close", "dollar_volume"),
    ("ta.sma(close,5)", "sma(close,5)"), ("not (close > 1)", "close <= 1"),
])
def test_different_keys(a: str, b: str) -> None:
    assert key(a) != key(b)


def test_canonical_spelling() -> None:
    assert key("Sma( Close ,50 ) > RSI14 * 2 and not sector == 'X'") == (
        '((sma(close,50)>(RSI14*2)) and (not (sector=="X")))')
    assert key("weekly(close > sma(30))") == "weekly((close>sma(close,30)))"
    assert key("weekly(close)[1] - close") == "(weekly(close)[1]-close)"
    assert key("rank(change(close, 63), by='industry')") == (
        'rank(change(close,63),by="industry")')


def test_keys_are_valid_screens_with_the_same_key() -> None:
    for text in ["Sma( Close ,50 ) > RSI14 * 2 and not sector == 'X'",
                 "weekly(close > sma(30)) or monthly(rsi() < 30)",
                 'sector in ("B","A") and -close[3] / 2 >= -1.5e-3',
                 "ta.aroon(14).aroonup > 70 and cdl_engulfing() != 0",
                 "crossed_above(1, bars_since(close == open)) and sma(2[3], 4) > 1",
                 'rank(5, by="sector") > 1']:
        k = key(text)
        assert key(k) == k


def test_clauses_split_the_top_level_conjunction() -> None:
    s = compile("# header\n(close > 1 or volume > 2) and\n  rsi() < 30   # oversold\n"
                "and (sector == 'A' and open > 1)")
    assert [c.text for c in s.clauses] == ["(close > 1 or volume > 2)", "rsi() < 30",
                                           "sector == 'A'", "open > 1"]
    assert [c.key for c in s.clauses] == ["((close>1) or (volume>2))", "(rsi(close,14)<30)",
                                          '(sector=="A")', "(open>1)"]
    assert [c.text for c in compile("weekly(close > 1 and open > 1)").clauses] == [
        "weekly(close > 1 and open > 1)"]
    assert [c.text for c in compile("close > 1").clauses] == ["close > 1"]


def test_terms_are_distinct_and_children_come_first() -> None:
    s = compile("sma(close,50) > sma(50) and SMA(close, 50) < close * 2 and close > 1")
    keys = [t.key for t in s.terms]
    assert len(keys) == len(set(keys))
    assert keys.count("sma(close,50)") == 1
    seen: set[str] = set()
    for t in s.terms:
        assert all(a.key in seen or a.op == "const" for a in t.args)
        seen.add(t.key)
    assert "2" not in s.keys  # literals are not terms
    assert compile("close > 1") is compile("close > 1")  # cached by text


@pytest.mark.parametrize(("text", "bars"), [
    ("close > 1", 1),
    ("sma(close,50) > 1", 50),
    ("ema(close,21) > 1", 21),
    ("rsi(close,14) > 1", 15),
    ("atr(14) > 1", 15),
    ("adx(14) > 1", 28),
    ("macd() > 1", 34),
    ("stoch_k() > 1", 9),
    ("obv() > 1", 1),
    ("close[3] > 1", 4),
    ("sma(close,50)[10] > 1", 60),
    ("sma(rsi(close,14), 10) > 1", 24),
    ("change(close, 63) > 1", 64),
    ("crossed_above(sma(close,50), sma(close,200))", 201),
    ("count(close > open, 20) > 3", 20),
    ("sma(close,5) > 1 and close[300] > 1", 301),
    ("weekly(close > sma(close,30))", 5 * 31),
    ("monthly(close > sma(close,10))", 22 * 11),
    ("weekly(close)[1] > 1", 11),
    ("weekly(close > 1) and sma(close, 200) > 1", 200),
    ("cdl_engulfing() > 0", 3),
    ("ta.kama(close, 30) > 1", 31),
])
def test_bars_needed(text: str, bars: int) -> None:
    assert compile(text).bars == bars


@pytest.mark.parametrize(("text", "column"), [
    ("sma(close,20) > 0", "SMA20"), ("sma(close,50) > 0", "SMA50"),
    ("sma(close,200) > 0", "SMA200"), ("ema(close,21) > 0", "EMA21"),
    ("rsi(close,14) > 0", "RSI14"), ("macd() > 0", "MACD"), ("atr(14) > 0", "ATR14"),
    ("adx(14) > 0", "ADX14"), ("plus_di(14) > 0", "PlusDI14"), ("minus_di(14) > 0", "MinusDI14"),
    ("bb_upper(close,20,2) > 0", "BBANDS"),
])
def test_bars_agree_with_the_scan_columns(text: str, column: str) -> None:
    assert compile(text).bars == LOOKBACK[column]
