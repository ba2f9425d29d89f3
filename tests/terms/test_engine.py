"""The engine: NaN and division by zero, strings, ranks, built-in columns, one computation per
key, weekly/monthly, against brute force and the reference interpreter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from engine_reference import Reference
from test_engine_property import Market, check_screen

from technic_v4 import data_engine
from technic_v4.data.market import MarketData
from technic_v4.scoring.scores import percentile_rating
from technic_v4.terms.engine import BUILTIN_KEYS, Evaluator, clause_mask, evaluate
from technic_v4.terms.kernels import IMPLS, Bars
from technic_v4.terms.language import compile


@pytest.fixture(scope="module")
def market(small_market: MarketData) -> Market:
    return Market(small_market)


def test_reference_frames_are_get_price_history_batch(market: Market, seed_api: MarketData
                                                      ) -> None:
    syms = [str(market.panel.symbols[i]) for i in market.rows[:5]]
    got = data_engine.get_price_history_batch(syms, market.panel.close.shape[1],
                                              market.panel.as_of)
    for i, s in zip(market.rows[:5], syms, strict=True):
        pd.testing.assert_frame_equal(got[s], market.frames[i], check_freq=False)


def test_division_by_zero_is_nan_and_comparisons_with_nan_do_not_hold(market: Market) -> None:
    ev = market.evaluator()
    ratio = compile("close / (open - open)", want="number").term
    assert np.isnan(ev.latest(ratio)).all()
    for op in ("<", "<=", ">", ">=", "==", "!="):
        s = compile(f"close / (close - close) {op} 1")
        assert not evaluate(s, ev).any(), op
    # ... while `not` of a clause that does not hold holds
    assert evaluate(compile("not (close / (close - close) > 1)"), ev).all()


def test_young_listing_has_nan_before_its_bars(market: Market) -> None:
    ev = market.evaluator()
    young = int(np.argmax(market.panel.day[:, 0] < 0))
    assert market.panel.day[young, 0] < 0
    bars = int((market.panel.day[young] >= 0).sum())
    s = compile(f"close[{bars}]", want="number")
    assert np.isnan(ev.latest(s.term)[young])
    assert not evaluate(compile(f"close[{bars}] > 0"), ev)[young]


def test_string_fields_and_in(market: Market) -> None:
    ev = market.evaluator()
    sectors = market.ref["Sector"].to_numpy(object)
    known = pd.notna(sectors)
    assert not known.all()  # ETFs have no sector: comparisons with them do not hold
    a, b = sorted(set(sectors[known]))[:2]
    np.testing.assert_array_equal(evaluate(compile(f'sector == "{a}"'), ev), sectors == a)
    np.testing.assert_array_equal(evaluate(compile(f'sector != "{a}"'), ev),
                                  (sectors != a) & known)
    np.testing.assert_array_equal(evaluate(compile(f'sector in ("{a}", "{b}")'), ev),
                                  (sectors == a) | (sectors == b))
    np.testing.assert_array_equal(ev.latest(compile("symbol", want="string").term),
                                  market.panel.symbols)


def test_missing_string_compares_false() -> None:
    n = 3
    x = np.ones((n, 4))
    bars = Bars(x, x, x, x, x, np.zeros((n, 4), dtype=np.int32))
    ref = pd.DataFrame({"Symbol": ["A", "B", "C"], "Sector": ["Energy", None, "Banks"],
                        "Industry": ["x"] * 3, "Type": ["CS"] * 3, "Exchange": ["X"] * 3,
                        "SharesOutstanding": [1.0] * 3})
    ev = Evaluator(bars, ref)
    assert evaluate(compile('sector == "Energy"'), ev).tolist() == [True, False, False]
    assert evaluate(compile('sector != "Energy"'), ev).tolist() == [False, False, True]
    assert evaluate(compile('sector in ("Energy", "Banks")'), ev).tolist() == [True, False, True]


def _brute_zscore(v: np.ndarray) -> np.ndarray:
    out = np.full(len(v), np.nan)
    ok = np.isfinite(v)
    if ok.sum() and np.std(v[ok]) > 0:
        out[ok] = (v[ok] - np.mean(v[ok])) / np.std(v[ok])
    return out


@pytest.mark.parametrize("by", [None, "sector", "industry"])
def test_rank_and_zscore_equal_brute_force(market: Market, by: str | None) -> None:
    ev = market.evaluator()
    arg = f', by="{by}"' if by else ""
    x = ev.latest(compile("change(close, 21)", want="number").term)
    x[::7] = np.nan  # NaN stays NaN
    ev.columns = {"Return21D": x}
    rank = ev.latest(compile(f"rank(Return21D{arg})", want="number").term)
    z = ev.latest(compile(f"zscore(Return21D{arg})", want="number").term)
    groups = (market.ref[by.capitalize()].to_numpy(object) if by
              else np.zeros(len(x), dtype=object))
    want_rank = np.full(len(x), np.nan)
    want_z = np.full(len(x), np.nan)
    for g in set(groups):
        m = groups == g
        want_rank[m] = percentile_rating(x[m])  # RSRating's own function, per group
        want_z[m] = _brute_zscore(x[m])
    np.testing.assert_array_equal(rank, want_rank)
    np.testing.assert_allclose(z, want_z, rtol=0, atol=1e-12)
    assert np.isnan(rank[::7]).all() and np.isnan(z[::7]).all()


def test_rank_on_every_bar_for_history(market: Market) -> None:
    """rank(x)[1] is the rank among the listings one bar earlier."""
    ev = market.evaluator()
    got = ev.latest(compile("rank(close)[1]", want="number").term)
    np.testing.assert_array_equal(got, percentile_rating(market.panel.close[:, -2]))


def test_each_key_is_computed_once(market: Market) -> None:
    ev = market.evaluator()
    where = compile("close > highest(close[1], 20) and highest(close[1], 20) > lowest(close, 5)"
                    " and change(close, 5) > 0 and count(close > open, 10) >= 5"
                    " and (close > open)[2]")
    ev.plan([where.term])
    mask = clause_mask(where, ev)
    assert mask.shape == (len(market.panel.symbols), 5)
    np.testing.assert_array_equal(evaluate(where, ev), mask.all(axis=1))
    assert set(ev.computed) == where.keys
    assert max(ev.computed.values()) == 1, ev.computed
    check_screen(market, where, ev)


def test_series_and_latest_agree(market: Market) -> None:
    ev = market.evaluator()
    t = compile("highest(close, 10) - lowest(close, 10)", want="number").term
    s = ev.series(t)
    assert s.shape == market.panel.close.shape
    np.testing.assert_array_equal(s[:, -1], ev.latest(t))
    ref = Reference(market.frames[market.rows[0]], market.ref.iloc[market.rows[0]])
    want = ref.run(t)[0]
    np.testing.assert_array_equal(s[market.rows[0], -len(want):], want)


def test_latest_only_column_series_has_only_its_last_bar(market: Market) -> None:
    n = len(market.panel.symbols)
    ev = Evaluator(Bars.of(market.panel), market.ref, {"TechRating": np.arange(n, dtype=float)})
    s = ev.series(compile("TechRating * 2", want="number").term)
    assert np.isnan(s[:, :-1]).all()
    np.testing.assert_array_equal(s[:, -1], 2 * np.arange(n))


@pytest.mark.skipif("rsi" not in IMPLS, reason="indicators module not merged yet")
@pytest.mark.parametrize("key", sorted(BUILTIN_KEYS))
def test_builtin_keys_equal_the_recomputed_value(market: Market, key: str) -> None:
    from technic_v4.indicators.compute import compute

    cols = compute(market.panel)
    t = compile(key, want="number").term
    assert t.key == key
    own = Evaluator(Bars.of(market.panel), market.ref).latest(t)
    np.testing.assert_array_equal(own, cols[BUILTIN_KEYS[key]])  # bit for bit (NaN too)
    reused = Evaluator(Bars.of(market.panel), market.ref, cols)
    reused.latest(t)
    assert reused.computed[key] == 1
    np.testing.assert_array_equal(reused.latest(t), cols[BUILTIN_KEYS[key]])


def test_builtin_column_is_read_not_recomputed(market: Market) -> None:
    n = len(market.panel.symbols)
    marker = np.full(n, 123.0)
    ev = Evaluator(Bars.of(market.panel), market.ref, {"RSI14": marker})
    assert (ev.latest(compile("rsi(close, 14)", want="number").term) == 123.0).all()
    assert compile("rsi(14)").term.key in BUILTIN_KEYS


@pytest.mark.parametrize("text", [
    "weekly(close > highest(close[1], 3))",
    "monthly(close) > monthly(open)",
    "weekly(change(close, 2)) > 0 and weekly(close)[1] > weekly(close)[2]",
    "weekly(sum(volume, 4))[1] > volume",
])
def test_weekly_and_monthly_equal_pandas_resample(market: Market, text: str) -> None:
    check_screen(market, compile(text))


def test_a_timeframe_term_read_on_every_session_is_refused_not_a_memory_blowup(
        market: Market) -> None:
    """`bars_since(weekly(…))` would rebuild the weekly bars as of each of the panel's sessions
    (memory and time growing with the square of the bars): a ConfigError pointing at the
    better spelling; a few sessions back (`weekly(x)[1]`, windows) still evaluate."""
    from technic_v4.errors import ConfigError

    ev = market.evaluator()
    screen = compile("bars_since(weekly(close > sma(close, 30))) >= 0")
    ev.plan([screen.term])
    with pytest.raises(ConfigError, match=r"weekly\(bars_since"):
        evaluate(screen, ev)
    ok = compile("weekly(close)[1] > 0 and highest(weekly(close), 10) > 0")
    ev = market.evaluator()
    ev.plan([ok.term])
    assert evaluate(ok, ev).any()
    assert len(ev._subs) == 1  # only today's weekly bars are kept


def test_numbers_beyond_float64_are_a_screen_error() -> None:
    from technic_v4.terms.language import ScreenError

    for text, column in (("close > 1e309", 9), ("-1e999 < close", 2),
                         ("close > " + "9" * 400, 9)):
        with pytest.raises(ScreenError, match="too large") as e:
            compile(text)
        assert e.value.column == column
        assert len(str(e.value).splitlines()[0]) < 200  # a long number is not echoed whole
