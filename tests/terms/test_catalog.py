"""The function catalogue against TA-Lib: names, defaults, minimum periods and lookbacks."""

from __future__ import annotations

from typing import Any

import pytest
import talib
from talib import abstract

from technic_v4.terms.catalog import CANDLESTICKS, CHART_PATTERNS, FUNCTIONS, Function
from technic_v4.terms.language import compile

ISSUE_NAMES = {
    "sma", "ema", "wma", "rsi", "roc", "mom", "atr", "natr", "adx", "plus_di", "minus_di", "cci",
    "mfi", "willr", "obv", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle",
    "bb_lower", "stoch_k", "stoch_d", "highest", "lowest", "sum", "stddev", "change",
    "crossed_above", "crossed_below", "bars_since", "count", "rank", "zscore", "between",
    "weekly", "monthly", "nr7", "inside_bar", "gap_up", "pocket_pivot", "new_high",
    "consolidation", "breakout", "darvas_breakout", "flat_base", "vcp", "cup_with_handle",
    "high_tight_flag",
}

# Our parameter names -> TA-Lib's (bb's k sets both deviations).
_TALIB_PARAM = {"n": ("timeperiod",), "fast": ("fastperiod",), "slow": ("slowperiod",),
                "signal": ("signalperiod",), "k": ("nbdevup", "nbdevdn"),
                "fastk": ("fastk_period",), "slowk": ("slowk_period",),
                "slowd": ("slowd_period",), "penetration": ("penetration",)}

TALIB_BACKED = [f for f in FUNCTIONS.values() if f.talib]


def _literal_params(f: Function) -> list[Any]:
    return [p for p in f.params if p.kind not in ("series", "condition")]


def _talib_lookback(f: Function, values: dict[str, Any]) -> int:
    fn = abstract.Function(f.talib)
    fn.set_parameters({t: (int(v) if isinstance(v, float) and t.endswith("period") else v)
                       for name, v in values.items() for t in _TALIB_PARAM[name]})
    return int(fn.lookback)


def test_every_name_of_the_issue_is_in_the_catalogue() -> None:
    assert set(FUNCTIONS) >= ISSUE_NAMES
    assert len(CHART_PATTERNS) == 12


def test_candlesticks_are_talibs_61_patterns() -> None:
    talib_names = talib.get_function_groups()["Pattern Recognition"]
    assert len(talib_names) == 61
    assert sorted(f"CDL{name.upper()}" for name in CANDLESTICKS) == sorted(talib_names)
    for name, (lookback, penetration) in CANDLESTICKS.items():
        fn = abstract.Function(f"CDL{name.upper()}")
        assert fn.lookback == lookback, name
        assert fn.info["parameters"].get("penetration") == penetration, name
        assert f"cdl_{name}" in FUNCTIONS


@pytest.mark.parametrize("f", TALIB_BACKED, ids=lambda f: f.name)
def test_defaults_and_outputs_are_talibs(f: Function) -> None:
    fn = abstract.Function(f.talib)
    talib_defaults = fn.info["parameters"]
    for p in _literal_params(f):
        for t in _TALIB_PARAM[p.name]:
            assert talib_defaults[t] == p.default, (f.name, p.name)
    if f.output:
        assert f.output in fn.info["output_names"]
    series = [p for p in f.params if p.kind == "series"]
    single = [v for v in fn.info["input_names"].values() if isinstance(v, str)]
    assert [p.default for p in series] == single  # x defaults to close where TA-Lib takes one


@pytest.mark.parametrize("f", TALIB_BACKED, ids=lambda f: f.name)
def test_lookbacks_and_minimum_periods_are_talibs(f: Function) -> None:
    params = _literal_params(f)
    defaults = {p.name: p.default for p in params}
    assert f.lookback(defaults) == _talib_lookback(f, defaults)
    for p in params:
        if p.kind != "window":
            continue
        for v in (p.minimum, p.minimum + 1, 7, 50):
            values = {**defaults, p.name: float(v)}
            assert f.lookback(values) == _talib_lookback(f, values), (f.name, p.name, v)
        below = {**defaults, p.name: float(p.minimum - 1)}
        assert _talib_lookback(f, below) == -1, (f.name, p.name)  # TA-Lib rejects it


def test_every_catalogue_function_compiles_with_its_defaults() -> None:
    for f in FUNCTIONS.values():
        required = [p for p in f.params if p.required]
        args = ", ".join("close" if p.kind == "series" else "close > open" if
                         p.kind == "condition" else "10" for p in required)
        s = compile(f"{f.name}({args})", want=None)
        assert s.term.type == f.returns or f.name in ("weekly", "monthly")
        assert s.bars >= 1
