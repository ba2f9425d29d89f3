"""Chart patterns: hand-built rows that must match and near misses that must not.

Each row is built bar by bar as (open, high, low, close, volume); the pattern is read at the
latest bar. A near miss changes the one thing the definition forbids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from technic_v4.terms.catalog import FUNCTIONS
from technic_v4.terms.kernels import Bars
from technic_v4.terms.kernels.patterns import IMPLS

Bar = tuple[float, float, float, float, float]


def _bars(*rows: Sequence[Bar]) -> Bars:
    width = max(len(r) for r in rows)
    vals = np.full((5, len(rows), width), np.nan)
    day = np.full((len(rows), width), -1, dtype=np.int32)
    for i, row in enumerate(rows):
        vals[:, i, width - len(row):] = np.array(row, dtype=float).T
        day[i, width - len(row):] = np.arange(len(row))
    return Bars(*vals, day=day)


def _latest(name: str, *rows: Sequence[Bar], **params: float) -> list[bool]:
    defaults = {p.name: p.default for p in FUNCTIONS[name].params}
    got = IMPLS[name](_bars(*rows), (), {**defaults, **params})
    assert got.dtype == np.bool_
    return [bool(x) for x in got[:, -1]]


def flat(n: int, price: float = 10.0, spread: float = 0.5, volume: float = 1000.0) -> list[Bar]:
    """n quiet bars around ``price``: high/low ``spread`` away, close = open = price."""
    return [(price, price + spread, price - spread, price, volume)] * n


def ramp(n: int, start: float, end: float, spread: float = 0.2, volume: float = 1000.0
         ) -> list[Bar]:
    """n bars closing on a straight line from start to end."""
    return [(p, p + spread, p - spread, p, volume) for p in np.linspace(start, end, n)]


def test_every_chart_pattern_has_an_implementation() -> None:
    assert set(IMPLS) == {n for n, f in FUNCTIONS.items() if f.group == "chart patterns"}


def test_nr7() -> None:
    six = [(10, 11 + i * 0.1, 9, 10, 1000) for i in range(6)]  # ranges 2.0 ... 2.5
    narrow = (10, 10.5, 9.5, 10, 1000)  # range 1.0
    tie = (10, 11, 9, 10, 1000)  # range 2.0 = the narrowest earlier one
    assert _latest("nr7", [*six, narrow], [*six, tie]) == [True, False]
    assert _latest("nr7", [*six[1:], narrow]) == [False]  # 6 bars: not enough history


def test_inside_bar() -> None:
    mother = (10, 12, 8, 11, 1000)
    inside = (11, 11.5, 9, 10, 1000)
    pokes_out = (11, 12.1, 9, 10, 1000)  # high above yesterday's
    same = (10, 12, 8, 11, 1000)  # equal range is not inside
    assert _latest("inside_bar", [mother, inside], [mother, pokes_out], [mother, same]) == [
        True, False, False]


def test_gap_up() -> None:
    y = (10, 10.5, 9.5, 10.2, 1000)
    gap = (10.9, 11.2, 10.8, 11, 1000)  # low 10.8 > high 10.5 by 2.9 %
    overlap = (10.6, 11.2, 10.4, 11, 1000)  # low 10.4 <= 10.5
    assert _latest("gap_up", [y, gap], [y, overlap]) == [True, False]
    assert _latest("gap_up", [y, gap], pct=2.0) == [True]
    assert _latest("gap_up", [y, gap], pct=3.0) == [False]


def test_pocket_pivot() -> None:
    base = [(10, 10.5, 9.5, 10, 1000)]
    # Ten prior sessions alternate down / up closes; the biggest down-day volume is 5000.
    prior = []
    for i in range(10):
        close = 9.8 if i % 2 == 0 else 10.0
        prior.append((10, 10.3, 9.7, close, 5000 if i == 4 else 3000 if i % 2 == 0 else 9000))
    up_big = (10, 10.6, 9.9, 10.5, 5001)
    up_small = (10, 10.6, 9.9, 10.5, 5000)  # only ties the largest down volume
    down_big = (10, 10.2, 9.5, 9.6, 20000)  # not an up close
    assert _latest("pocket_pivot", [*base, *prior, up_big], [*base, *prior, up_small],
                   [*base, *prior, down_big]) == [True, False, False]
    # Up days' volume (9000) does not count: only down closes set the bar.


def test_new_high() -> None:
    rows = ramp(9, 10, 12)
    assert _latest("new_high", [*rows, (12, 12.5, 11.8, 12.3, 1000)], n=10) == [True]
    assert _latest("new_high", [*rows, (12, 12.1, 11.8, 12.0, 1000)], n=10) == [False]
    assert _latest("new_high", [*rows, (12, 12.5, 11.8, 12.3, 1000)], n=11) == [False]  # short


def test_consolidation() -> None:
    tight = flat(20, 10, 0.4)  # highest 10.4, lowest 9.6: depth 7.7 %
    wide = [*flat(19, 10, 0.4), (10, 10.4, 9.3, 10, 1000)]  # lowest 9.3: depth 10.6 %
    assert _latest("consolidation", tight, wide) == [True, False]
    assert _latest("consolidation", tight, max_range_pct=7.0) == [False]


def test_breakout() -> None:
    base = flat(50, 10, 0.5, volume=1000)  # highest high 10.5, average volume 1000
    good = (10.5, 10.8, 10.4, 10.7, 1500)
    thin = (10.5, 10.8, 10.4, 10.7, 1499)  # volume below 1.5 × average
    inside = (10.3, 10.6, 10.2, 10.5, 3000)  # close not above 10.5
    assert _latest("breakout", [*base, good], [*base, thin], [*base, inside]) == [
        True, False, False]


def _darvas_row(bottom_age: int, top_age: int = 10) -> list[Bar]:
    """Rise to a 52-week high ``top_age`` sessions ago, drift, a low ``bottom_age`` ago."""
    rise = ramp(253 - top_age, 10, 20)  # the top (20.2) is the last bar of the rise
    box = flat(top_age - 1, 19, 0.5)
    box[-bottom_age] = (19, 19.5, 17, 19, 1000)  # the box bottom
    return [*rise, *box, (19.5, 20.6, 19.4, 20.5, 2000)]


def test_darvas_breakout() -> None:
    held = _darvas_row(bottom_age=4)  # 3 sessions between the bottom and today held above it
    fresh = _darvas_row(bottom_age=3)  # only 2: the box is not confirmed
    assert _latest("darvas_breakout", held, fresh) == [True, False]
    no_close = [*held[:-1], (19.5, 20.6, 19.4, 20.1, 2000)]  # close below the top 20.2
    older_high = list(held)
    older_high[50] = (12, 30, 11, 12, 1000)  # the 52-week high is 30, not the box's 20.2
    assert _latest("darvas_breakout", no_close, older_high) == [False, False]


def test_flat_base() -> None:
    advance = ramp(25, 8, 10)  # lowest low 7.8
    base = flat(25, 10, 0.6)  # 5 weeks: highest 10.6, lowest 9.4 -> depth 11.3 %
    deep = [*base[:-1], (10, 10.6, 8.9, 10, 1000)]  # lowest 8.9 -> depth 16 %
    no_advance = ramp(25, 9.5, 10)  # lowest low 9.3: base top 10.6 is only 14 % above
    assert _latest("flat_base", [*advance, *base], [*advance, *deep],
                   [*no_advance, *base]) == [True, False, False]


def test_vcp() -> None:
    trend = ramp(170, 5, 10)  # the 200-session average is far below today's close
    c1 = flat(10, 10, 1.0)  # depth 18 %
    c2 = flat(10, 10, 0.5, volume=900)  # depth 9.5 %
    c3 = flat(10, 10, 0.2, volume=500)  # depth 3.9 %, volume dried up
    assert _latest("vcp", [*trend, *c1, *c2, *c3]) == [True]
    assert _latest("vcp", [*trend, *c1, *c3, *c2]) == [False]  # the last pullback widens
    loud = flat(10, 10, 0.2, volume=1200)  # volume above the first stretch's
    assert _latest("vcp", [*trend, *c1, *c2, *loud]) == [False]
    assert _latest("vcp", [*trend, *c1, *c2, *c3], max_depth_pct=15.0) == [False]
    downtrend = ramp(170, 20, 10)  # close below its 200-session average
    assert _latest("vcp", [*downtrend, *c1, *c2, *c3]) == [False]


def _cup(handle_low: float, right_lip: float = 19.8, cup_low: float = 14.0) -> list[Bar]:
    """A 40-session cup from a left lip at 20 down to ``cup_low`` and back, then a handle."""
    lead = flat(310, 12, 0.2)  # history before the cup, well below it
    left = [(19.5, 20.0, 19.4, 19.8, 1000)]
    down = ramp(19, 19.5, cup_low + 0.3)
    bottom = [(cup_low + 0.2, cup_low + 0.4, cup_low, cup_low + 0.3, 1000)]
    up = ramp(19, cup_low + 0.5, right_lip - 0.4)
    lip = [(right_lip - 0.3, right_lip, right_lip - 0.5, right_lip - 0.2, 1000)]
    handle = [(right_lip - 1.2, right_lip - 0.9, handle_low, right_lip - 1.1, 800)] * 7
    return [*lead, *left, *down, *bottom, *up, *lip, *handle]


def test_cup_with_handle() -> None:
    assert _latest("cup_with_handle", _cup(handle_low=18.0)) == [True]  # handle 9 % deep
    assert _latest("cup_with_handle", _cup(handle_low=17.0)) == [False]  # handle 14 % deep
    assert _latest("cup_with_handle", _cup(18.0, cup_low=12.0)) == [False]  # cup 40 % deep
    assert _latest("cup_with_handle", _cup(17.2, right_lip=18.1)) == [True]
    assert _latest("cup_with_handle", _cup(17.2, right_lip=17.9)) == [False]  # lip < 90 % of 20
    assert _latest("cup_with_handle", _cup(handle_low=18.0), max_depth_pct=25.0) == [False]


def _flag(pole_gain: float, flag_low: float) -> list[Bar]:
    base = flat(30, 10, 0.2)  # pole starts from a 9.8 low
    top = 9.8 * (1 + pole_gain / 100)
    pole = ramp(30, 10, top - 0.2)  # the top high is top
    flag = [(top - 0.5, top - 0.3, flag_low, top - 0.6, 500)] * 20
    return [*base, *pole, *flag]


def test_high_tight_flag() -> None:
    assert _latest("high_tight_flag", _flag(110, flag_low=17.5)) == [True]  # top 20.58
    assert _latest("high_tight_flag", _flag(80, flag_low=15.5)) == [False]  # pole only +80 %
    assert _latest("high_tight_flag", _flag(110, flag_low=15.0)) == [False]  # flag 27 % deep
    assert _latest("high_tight_flag", _flag(80, flag_low=15.5), gain_pct=75.0) == [True]


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_padding_and_short_rows_never_match(name: str) -> None:
    """A row with fewer bars than the lookback is False everywhere, whatever its bars."""
    f = FUNCTIONS[name]
    defaults = {p.name: p.default for p in f.params}
    look = f.lookback(defaults)
    rng = np.random.default_rng(1)
    k = look  # one bar short
    c = 10 + rng.normal(size=k).cumsum() * 0.3
    row = [(x, x + 0.5, x - 0.5, x + 0.1, 1000 + 500 * i) for i, x in enumerate(c)]
    got = IMPLS[name](_bars(row, [row[0]] * (look + 1)), (), defaults)
    assert not got[0].any()
