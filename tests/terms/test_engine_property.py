"""Property: random well-typed expressions evaluated by the engine over the panel equal the
per-symbol reference interpreter (tests/terms/engine_reference.py) on every subterm's latest value,
bit for bit for elementwise and window terms, 1e-9 relative for TA-Lib ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from engine_reference import Reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_v4.data.market import MarketData
from technic_v4.terms.engine import Evaluator
from technic_v4.terms.kernels import IMPLS, Bars
from technic_v4.terms.language import compile
from technic_v4.terms.language.screen import Screen

WIDTH = 160


class Market:
    def __init__(self, md: MarketData) -> None:
        as_of = md.resolve_as_of(None)
        self.panel = md.panel(as_of, WIDTH)
        ref = md.reference().set_index("Symbol")
        self.ref = ref.loc[list(self.panel.symbols)].reset_index()
        self.rows = [i for i in range(len(self.panel.symbols)) if self.panel.day[i, -1] >= 0]
        self.frames = {i: self.panel.frame(i) for i in self.rows}

    def evaluator(self) -> Evaluator:
        return Evaluator(Bars.of(self.panel), self.ref)

    def references(self) -> dict[int, Reference]:
        return {i: Reference(self.frames[i], self.ref.iloc[i]) for i in self.rows}


@pytest.fixture(scope="module")
def market(small_market: MarketData) -> Iterator[Market]:
    yield Market(small_market)


def check_screen(market: Market, screen: Screen, ev: Evaluator | None = None) -> None:
    """Every subterm's latest value: engine == reference (skipping ambiguous rows)."""
    ev = ev or market.evaluator()
    refs = market.references()
    for term in screen.terms:
        got = ev.latest(term)
        for i in market.rows:
            value, amb = refs[i].run(term)
            if amb[-1]:
                continue
            want = value if np.ndim(value) == 0 else value[-1]
            where = f"{term.key} on {market.panel.symbols[i]}"
            if term.type == "string":
                assert got[i] == want, where
            elif term.type == "bool":
                assert bool(got[i]) == bool(want), where
            elif np.isnan(want):
                assert np.isnan(got[i]), f"{where}: {got[i]} != NaN"
            else:
                exact = term.op != "call" or term.name not in _TALIB
                tol = 0.0 if exact else 1e-9 * abs(want)
                assert abs(got[i] - want) <= tol, f"{where}: {got[i]!r} != {want!r}"


_TALIB = ("sma", "ema", "rsi", "atr", "wma", "roc", "mom", "stddev")
_FIELDS = ("open", "high", "low", "close", "volume", "dollar_volume", "market_cap")
_IND = tuple(f for f in ("sma", "ema", "rsi") if f in IMPLS)


def _num(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(st.sampled_from(_FIELDS),
                       st.sampled_from(["1", "2.5", "0", "100", "1e6", "0.001"]))
    if depth <= 0:
        return leaves
    sub = _num(depth - 1)
    cond = _bool(depth - 1)
    win = st.integers(2, 25)
    options = [
        leaves,
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub, st.sampled_from("+-*/"), sub),
        st.builds(lambda a: f"-({a})", sub),
        st.builds(lambda a, n: f"({a})[{n}]", sub, st.integers(0, 6)),
        st.builds(lambda f, a, n: f"{f}(x={a}, n={n})",
                  st.sampled_from(["highest", "lowest", "sum", "stddev"]), sub, win),
        st.builds(lambda a, n: f"change(x={a}, n={n})", sub, st.integers(1, 20)),
        st.builds(lambda c: f"bars_since({c})", cond),
        st.builds(lambda c, n: f"count({c}, {n})", cond, st.integers(1, 20)),
    ]
    if _IND:
        options.append(st.builds(lambda f, x, n: f"{f}({x}, {n})", st.sampled_from(_IND),
                                 st.sampled_from(("close", "high", "volume")), win))
    return st.one_of(*options)


def _bool(depth: int) -> st.SearchStrategy[str]:
    sub = _num(depth)
    leaves = st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", sub,
                  st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), sub),
        st.sampled_from(['sector == "Energy"', 'sector != "Energy"',
                         'industry in ("Banks", "Software")', 'symbol == "SPY"']),
    )
    if depth <= 0:
        return leaves
    bsub = _bool(depth - 1)
    return st.one_of(
        leaves,
        st.builds(lambda a, op, b: f"({a} {op} {b})", bsub, st.sampled_from(["and", "or"]),
                  bsub),
        st.builds(lambda a: f"not ({a})", bsub),
        st.builds(lambda a, n: f"({a})[{n}]", bsub, st.integers(1, 4)),
        st.builds(lambda f, a, b: f"{f}({a}, {b})",
                  st.sampled_from(["crossed_above", "crossed_below"]), sub, sub),
        st.builds(lambda a, b, c: f"between({a}, {b}, {c})", sub, sub, sub),
    )


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=st.one_of(_bool(2), _num(2)))
def test_engine_equals_reference_interpreter(market: Market, text: Any) -> None:
    check_screen(market, compile(text))
