"""Property: a random well-typed screen, printed in two random styles (spacing, case of names,
defaults spelled or not, keyword or positional arguments, number spellings, extra parentheses),
compiles to one key; and that key is itself a screen with the same key."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from technic_v4.terms.catalog import FUNCTIONS
from technic_v4.terms.language import compile

Tree = tuple[Any, ...]

_SERIES = ("open", "high", "low", "close", "volume", "dollar_volume")
_NUM_FUNCS = ("sma", "ema", "wma", "rsi", "roc", "mom", "atr", "natr", "adx", "cci", "willr",
              "obv", "macd", "macd_hist", "bb_upper", "bb_lower", "stoch_d", "highest",
              "lowest", "sum", "stddev", "change", "rank", "zscore", "cdl_doji",
              "cdl_morningstar")
_BOOL_FUNCS = ("crossed_above", "crossed_below", "nr7", "inside_bar", "gap_up", "new_high",
               "between")


@st.composite
def _call(draw: st.DrawFn, name: str, depth: int, tf: bool) -> Tree:
    f = FUNCTIONS[name]
    args = []
    for p in f.params:
        if p.kind == "series":
            x = draw(_num(depth - 1, tf))
            # a number literal first in a call binds the window when the series has a
            # default (`sma(50)`); a series argument is never a bare literal here
            literal = x[0] == "num" or (x[0] == "neg" and x[1][0] == "num")
            args.append((p, ("field", "close") if literal else x))
        elif p.kind == "condition":
            args.append((p, draw(_bool(depth - 1, tf))))
        elif p.kind == "window":
            use_default = p.default is not None and p.default != "<required>" and draw(
                st.booleans())
            args.append((p, p.default if use_default else float(
                draw(st.integers(int(p.minimum), 60)))))
        elif p.kind == "number":
            args.append((p, draw(st.sampled_from([p.default, 0.5, 3.0, 2.5]))))
        else:
            args.append((p, draw(st.sampled_from([None, *p.choices]))))
    return ("call", name, tuple(args))


def _num(depth: int, tf: bool = False) -> st.SearchStrategy[Tree]:
    leaves = st.one_of(st.sampled_from(_SERIES).map(lambda s: ("field", s)),
                       st.sampled_from([1.0, 2.5, 50.0, 1e6, 0.001]).map(lambda v: ("num", v)))
    if depth <= 0:
        return leaves
    sub = _num(depth - 1, tf)
    options = [
        leaves,
        st.tuples(st.just("bin"), st.sampled_from("+-*/"), sub, sub),
        st.tuples(st.just("neg"), sub),
        st.tuples(st.just("index"), sub, st.integers(0, 5)),
        st.sampled_from(_NUM_FUNCS).flatmap(lambda n: _call(n, depth, tf)),
    ]
    if not tf:
        options.append(st.tuples(st.just("tf"), st.sampled_from(["weekly", "monthly"]),
                                 _num(depth - 1, True)))
    return st.one_of(*options)


def _bool(depth: int, tf: bool = False) -> st.SearchStrategy[Tree]:
    leaves = st.one_of(
        st.sampled_from(["Energy", "Health Care"]).map(lambda s: ("sector_eq", s)),
        st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=3).map(
            lambda xs: ("sector_in", tuple(xs))),
    )
    if depth <= 0:
        return leaves
    num = _num(depth - 1, tf)
    sub = _bool(depth - 1, tf)
    return st.one_of(
        leaves,
        st.tuples(st.just("bin"), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), num, num),
        st.tuples(st.just("bin"), st.sampled_from(["and", "or"]), sub, sub),
        st.tuples(st.just("not"), sub),
        st.sampled_from(_BOOL_FUNCS).flatmap(lambda n: _call(n, depth, tf)),
    )


def _num_text(v: float, draw: st.DrawFn) -> str:
    if v == int(v):
        i = int(v)
        return draw(st.sampled_from([str(i), f"{i}.0", f"{i:_}", f"{float(i):e}"]))
    return draw(st.sampled_from([repr(v), f"{v:e}"]))


def _case(name: str, draw: st.DrawFn) -> str:
    return draw(st.sampled_from([name, name.upper(), name.title()]))


def _sp(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["", " ", "  ", "\n "]))


@st.composite
def _render(draw: st.DrawFn, t: Tree) -> str:
    kind = t[0]
    s = _sp
    if kind == "field":
        out = _case(t[1], draw)
    elif kind == "num":
        out = _num_text(t[1], draw)
    elif kind == "bin":
        op = _case(t[1], draw) if t[1] in ("and", "or") else t[1]
        pad = " " if t[1] in ("and", "or") else s(draw)
        out = f"({draw(_render(t[2]))}{pad}{op}{pad}{draw(_render(t[3]))})"
    elif kind == "neg":
        out = f"(-{s(draw)}{draw(_render(t[1]))})"
    elif kind == "not":
        out = f"({_case('not', draw)} {draw(_render(t[1]))})"
    elif kind == "index":
        out = f"{draw(_render(t[1]))}[{s(draw)}{t[2]}{s(draw)}]"
    elif kind == "tf":
        out = f"{_case(t[1], draw)}({s(draw)}{draw(_render(t[2]))}{s(draw)})"
    elif kind == "sector_eq":
        out = f'({_case("sector", draw)} == "{t[1]}")'
    elif kind == "sector_in":
        opts = ", ".join(f'"{o}"' for o in t[1])
        out = f"({_case('sector', draw)} {_case('in', draw)} ({opts}))"
    else:
        out = draw(_render_call(t))
    if draw(st.booleans()) and kind not in ("num",):
        out = f"({s(draw)}{out}{s(draw)})"
    return out


@st.composite
def _render_call(draw: st.DrawFn, t: Tree) -> str:
    _, name, args = t
    parts: list[str] = []
    positional = True
    for i, (p, v) in enumerate(args):
        is_default = not p.required and (
            (p.kind == "series" and v == ("field", p.default)) or v == p.default)
        if is_default and draw(st.booleans()):
            # omitting a leading defaulted series keeps positional binding for literals after it
            leading_series = i == 0 and p.kind == "series"
            positional = positional and leading_series
            continue
        if p.kind in ("series", "condition"):
            text = draw(_render(v))
        elif p.kind == "choice":
            if v is None:
                continue
            text = f'"{_case(v, draw)}"'
        else:
            text = _num_text(v, draw)
        if p.keyword_only or not positional or draw(st.integers(0, 3)) == 0:
            positional = False
            parts.append(f"{_case(p.name, draw)}{_sp(draw)}={_sp(draw)}{text}")
        else:
            parts.append(text)
    return f"{_case(name, draw)}({(',' + _sp(draw)).join(parts)})"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_bool(3), data=st.data())
def test_two_spellings_one_key(tree: Tree, data: st.DataObject) -> None:
    a = data.draw(_render(tree))
    b = data.draw(_render(tree))
    ka = compile(a).term.key
    assert compile(b).term.key == ka, (a, b)
    assert compile(ka).term.key == ka


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_num(3), data=st.data())
def test_number_expressions_round_trip(tree: Tree, data: st.DataObject) -> None:
    text = data.draw(_render(tree))
    s = compile(text, want="number")
    assert compile(s.term.key, want="number").term.key == s.term.key
    assert s.bars >= 1
