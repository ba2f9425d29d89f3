"""Window kernels against TA-Lib (MAX MIN SUM STDDEV) and brute force, with NaN windows."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from technic_v4.terms.kernels import IMPLS, Bars
from technic_v4.terms.kernels.windows import LOCAL


def _bars(close: np.ndarray) -> Bars:
    day = np.where(np.isnan(close), -1, np.arange(close.shape[1])[None, :] + 20000)
    return Bars(close, close, close, close, close, day.astype(np.int32))


@pytest.fixture(scope="module")
def prices() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (6, 120)), axis=1))
    x[1, :30] = np.nan  # a young listing: padding on the left
    x[2, 50:] = np.round(x[2, 50:])  # ties
    x[3, :] = 42.0  # constant: stddev 0
    return x


@pytest.mark.parametrize("n", [2, 3, 14, 30])
@pytest.mark.parametrize("name,func", [("highest", talib.MAX), ("lowest", talib.MIN),
                                       ("sum", talib.SUM), ("stddev", talib.STDDEV)])
def test_windows_equal_talib(prices: np.ndarray, name: str, func: object, n: int) -> None:
    got = IMPLS[name](_bars(prices), (prices,), {"n": n})
    for r in range(prices.shape[0]):
        want = func(prices[r], timeperiod=n)  # type: ignore[operator]
        np.testing.assert_array_equal(np.isnan(got[r]), np.isnan(want))
        if name in ("highest", "lowest"):
            np.testing.assert_array_equal(got[r], want)  # bit for bit
        else:  # TA-Lib's running sums lose digits; ours re-add each window
            np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-9 * np.nanmax(prices[r]))


def test_stddev_is_population_and_exact_on_constant(prices: np.ndarray) -> None:
    got = IMPLS["stddev"](_bars(prices), (prices,), {"n": 5})
    np.testing.assert_allclose(got[0, 4:], [np.std(prices[0, i - 4:i + 1])
                                            for i in range(4, 120)], rtol=1e-12)
    assert (got[3, 4:] == 0.0).all()


def test_a_nan_inside_a_window_makes_it_nan(prices: np.ndarray) -> None:
    x = prices.copy()
    x[0, 60] = np.nan  # an undefined value (e.g. a division by zero) in the middle
    for name in ("highest", "lowest", "sum", "stddev"):
        got = IMPLS[name](_bars(x), (x,), {"n": 5})[0]
        assert np.isnan(got[60:65]).all() and not np.isnan(got[65:]).any(), name
        assert not np.isnan(got[55:60]).any(), name


def test_change_crosses_bars_since_count_between_brute_force(prices: np.ndarray) -> None:
    b = _bars(prices)
    x = prices
    ch = IMPLS["change"](b, (x,), {"n": 3})
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(ch[:, 3:], 100.0 * (x[:, 3:] / x[:, :-3] - 1.0))
    assert np.isnan(ch[:, :3]).all()
    zero = x.copy()
    zero[0, 10] = 0.0
    assert np.isnan(IMPLS["change"](b, (zero,), {"n": 3})[0, 13])  # division by zero

    level = np.full_like(x, 100.0)
    up = IMPLS["crossed_above"](b, (x, level), {})
    down = IMPLS["crossed_below"](b, (x, level), {})
    for r in range(x.shape[0]):
        for i in range(1, x.shape[1]):
            with np.errstate(invalid="ignore"):
                assert up[r, i] == bool(x[r, i] > 100 and x[r, i - 1] <= 100)
                assert down[r, i] == bool(x[r, i] < 100 and x[r, i - 1] >= 100)
    assert not up[:, 0].any() and not down[:, 0].any()

    with np.errstate(invalid="ignore"):
        cond = x > np.roll(x, 1, axis=1)
    since = IMPLS["bars_since"](b, (cond,), {})
    cnt = IMPLS["count"](b, (cond,), {"n": 4})
    for r in range(x.shape[0]):
        last = None
        first_real = int(np.argmax(~np.isnan(x[r])))
        for i in range(x.shape[1]):
            if cond[r, i]:
                last = i
            want = np.nan if last is None else i - last
            assert since[r, i] == want or (np.isnan(want) and np.isnan(since[r, i]))
            want_c = np.nan if i - 3 < first_real else float(cond[r, i - 3:i + 1].sum())
            assert cnt[r, i] == want_c or (np.isnan(want_c) and np.isnan(cnt[r, i]))

    lo, hi = np.full_like(x, 90.0), np.full_like(x, 110.0)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(IMPLS["between"](b, (x, lo, hi), {}),
                                      (x >= 90) & (x <= 110))


@pytest.mark.parametrize("name", sorted(LOCAL - {"between", "crossed_above", "crossed_below"}))
def test_local_windows_do_not_depend_on_where_the_panel_starts(prices: np.ndarray,
                                                                name: str) -> None:
    """The engine passes only the trailing bars a caller needs to these functions."""
    x = prices[[0, 2]]
    arg = x > 100 if name == "count" else x
    full = IMPLS[name](_bars(x), (arg,), {"n": 7})
    tail = IMPLS[name](_bars(x[:, -20:]), (arg[:, -20:],), {"n": 7})
    np.testing.assert_array_equal(full[:, -13:], tail[:, -13:])
