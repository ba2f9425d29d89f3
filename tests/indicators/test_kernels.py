"""Tests of ``technic_v4.indicators.kernels`` against TA-Lib (``talib``) and brute force.

Every TA-Lib-backed kernel is required to be bit-exact, so comparisons use
``np.testing.assert_array_equal`` (NaN positions must match too).  The only tolerance
checks are for ``rolling_std`` (reference: ``np.std(window, ddof=1)``, which sums
pairwise, so bit-equality is impossible) and for the ``np.mean`` brute-force check of
``sma`` (same reason); each such place says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from technic_v4.indicators import kernels as K

FloatArray = npt.NDArray[np.float64]
SMA = talib.MA_Type.SMA  # BBANDS matype 0

N_ROWS = 40
N_BARS = 400

# Each property runs twice: on a fixed set of examples (the same every run, so a CI failure
# repeats) and as a search for new ones (a failure prints the example and a @reproduce_failure
# blob). Both bounded: ~60 examples each.
FIXED = settings(max_examples=60, deadline=None, derandomize=True, database=None)
SEARCH = settings(max_examples=60, deadline=None, database=None)

# Typical periods plus the edge cases TA-Lib accepts.
SMA_EMA_PERIODS = [1, 2, 3, 5, 9, 12, 14, 20, 21, 26, 50, 200]
RSI_PERIODS = [2, 3, 5, 9, 14, 21, 50, 200]
ATR_PERIODS = [1, 2, 5, 14, 20, 50, 200]
DMI_PERIODS = [2, 3, 5, 9, 14, 20, 50, 200]
BB_PERIODS = [2, 5, 20, 21, 50, 200]
MINMAX_PERIODS = [2, 3, 5, 14, 20, 50, 200]
MACD_PARAMS = [
    (12, 26, 9),
    (5, 35, 5),
    (26, 12, 9),  # fast > slow: TA-Lib swaps them
    (12, 26, 1),  # signal period 1: signal line == MACD line
    (2, 2, 1),
    (9, 9, 9),  # fast == slow: MACD line is exactly 0
    (3, 50, 20),
]


# ---------------------------------------------------------------------------------------
# Data builders and reference helpers
# ---------------------------------------------------------------------------------------


def _series(kind: int, n: int, rng: np.random.Generator) -> FloatArray:
    """One close series; kinds cycle through prices, signed noise, gaps and tick data."""
    if kind == 0:  # geometric random walk around 100
        return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    if kind == 1:  # zero-mean signed values: makes EMA/MACD FMA rounding visible
        return rng.normal(0.0, 1.0, n)
    if kind == 2:  # large gaps (x3 / /4 jumps)
        s = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        s[n // 7 :: 37] *= 3.0
        s[n // 5 :: 53] /= 4.0
        return s
    # tick-rounded prices with a flat run in the middle
    s = np.round(20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))), 2)
    s[n // 3 : n // 2] = s[n // 3]
    return s


def _hlc(close: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    scale = np.abs(close) * 0.01 + 1e-3
    high = close + np.abs(rng.normal(0.0, 1.0, close.shape)) * scale
    low = close - np.abs(rng.normal(0.0, 1.0, close.shape)) * scale
    return high, low


def _lead_counts(lookbacks: Sequence[int], n_rows: int, n_bars: int, seed: int) -> list[int]:
    """Leading-NaN counts: 0, 1, some, lookback-1/lookback/lookback+1, all-but-one, all."""
    counts = [0, 1, 7, n_bars - 1, n_bars, n_bars // 2]
    for lb in lookbacks:
        counts += [lb - 1, lb, lb + 1, n_bars - lb - 1, n_bars - lb, n_bars - lb + 1]
    rng = np.random.default_rng(seed)
    while len(counts) < n_rows:
        counts.append(int(rng.integers(0, n_bars + 1)))
    return [min(max(c, 0), n_bars) for c in counts[:n_rows]]


def _panel1(lookbacks: Sequence[int], seed: int = 11) -> FloatArray:
    rng = np.random.default_rng(seed)
    x = np.vstack([_series(r % 4, N_BARS, rng) for r in range(N_ROWS)])
    for r, lead in enumerate(_lead_counts(lookbacks, N_ROWS, N_BARS, seed)):
        x[r, :lead] = np.nan
    return x


def _panel3(lookbacks: Sequence[int], seed: int = 12) -> tuple[FloatArray, FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    close = np.vstack([_series(r % 4, N_BARS, rng) for r in range(N_ROWS)])
    high, low = _hlc(close, rng)
    for r, lead in enumerate(_lead_counts(lookbacks, N_ROWS, N_BARS, seed)):
        high[r, :lead] = low[r, :lead] = close[r, :lead] = np.nan
    # Staggered starts: the row's first valid bar is where *all* inputs are valid.
    high[5, :30] = np.nan
    low[6, :45] = np.nan
    close[7, :60] = np.nan
    return high, low, close


def _first_valid(*rows: FloatArray) -> int:
    valid = np.ones(rows[0].shape[0], dtype=bool)
    for row in rows:
        valid &= ~np.isnan(row)
    idx = np.flatnonzero(valid)
    return int(idx[0]) if idx.size else rows[0].shape[0]


def _talib_rowwise(func: Callable[..., Any], *inputs: FloatArray) -> tuple[FloatArray, ...]:
    """Reference per the contract: TA-Lib on each row's trimmed valid part, put back."""
    n_rows, n_bars = inputs[0].shape
    outs: list[FloatArray] | None = None
    for r in range(n_rows):
        rows = [a[r] for a in inputs]
        b = _first_valid(*rows)
        res = func(*[row[b:] for row in rows]) if b < n_bars else None
        if res is not None and not isinstance(res, tuple):
            res = (res,)
        if outs is None:
            n_out = len(res) if res is not None else len(func(*[np.ones(300)] * len(rows)))
            outs = [np.full((n_rows, n_bars), np.nan) for _ in range(n_out)]
        if res is not None:
            for o, v in zip(outs, res, strict=True):
                o[r, b:] = v
    assert outs is not None
    return tuple(outs)


def _as_tuple(x: FloatArray | tuple[FloatArray, ...]) -> tuple[FloatArray, ...]:
    return x if isinstance(x, tuple) else (x,)


def _assert_exact(mine: FloatArray | tuple[FloatArray, ...], ref: tuple[FloatArray, ...]) -> None:
    got = _as_tuple(mine)
    assert len(got) == len(ref)
    for g, e in zip(got, ref, strict=True):
        assert g.dtype == np.float64
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def _assert_close(mine: FloatArray, ref: FloatArray, rtol: float = 1e-9) -> None:
    """``|a - b| <= rtol * max(1, |b|)`` with identical NaN positions."""
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    m = ~np.isnan(ref)
    err = np.abs(mine[m] - ref[m])
    bound = rtol * np.maximum(1.0, np.abs(ref[m]))
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}"


def _windows_ref(
    x: FloatArray, period: int, reducer: Callable[[FloatArray], FloatArray]
) -> FloatArray:
    """Brute force: ``reducer`` applied to every full window of each row's valid part."""
    x2 = np.atleast_2d(x)
    out = np.full(x2.shape, np.nan)
    for r in range(x2.shape[0]):
        b = _first_valid(x2[r])
        valid = x2[r, b:]
        if valid.shape[0] >= period:
            out[r, b + period - 1 :] = reducer(sliding_window_view(valid, period))
    return out.reshape(np.shape(x))


# ---------------------------------------------------------------------------------------
# Panel tests: every row against TA-Lib on that row
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", SMA_EMA_PERIODS)
def test_sma_matches_talib(period: int) -> None:
    x = _panel1([period - 1])
    _assert_exact(K.sma(x, period), _talib_rowwise(lambda a: talib.SMA(a, period), x))


@pytest.mark.parametrize("period", SMA_EMA_PERIODS)
def test_ema_matches_talib(period: int) -> None:
    x = _panel1([period - 1])
    _assert_exact(K.ema(x, period), _talib_rowwise(lambda a: talib.EMA(a, period), x))


@pytest.mark.parametrize("period", RSI_PERIODS)
def test_rsi_matches_talib(period: int) -> None:
    x = _panel1([period])
    _assert_exact(K.rsi(x, period), _talib_rowwise(lambda a: talib.RSI(a, period), x))


@pytest.mark.parametrize(("fast", "slow", "signal"), MACD_PARAMS)
def test_macd_matches_talib(fast: int, slow: int, signal: int) -> None:
    lookback = max(fast, slow) - 1 + signal - 1
    x = _panel1([lookback])
    ref = _talib_rowwise(lambda a: talib.MACD(a, fast, slow, signal), x)
    _assert_exact(K.macd(x, fast, slow, signal), ref)


@pytest.mark.parametrize("period", ATR_PERIODS)
def test_atr_matches_talib(period: int) -> None:
    h, lo, c = _panel3([period])
    ref = _talib_rowwise(lambda a, b, d: talib.ATR(a, b, d, period), h, lo, c)
    _assert_exact(K.atr(h, lo, c, period), ref)


def test_atr_period_1_is_true_range() -> None:
    h, lo, c = _panel3([1])
    _assert_exact(K.atr(h, lo, c, 1), _talib_rowwise(talib.TRANGE, h, lo, c))


@pytest.mark.parametrize("period", DMI_PERIODS)
def test_dmi_matches_talib(period: int) -> None:
    h, lo, c = _panel3([period, 2 * period - 1])
    ref = (
        _talib_rowwise(lambda a, b, d: talib.PLUS_DI(a, b, d, period), h, lo, c)[0],
        _talib_rowwise(lambda a, b, d: talib.MINUS_DI(a, b, d, period), h, lo, c)[0],
        _talib_rowwise(lambda a, b, d: talib.ADX(a, b, d, period), h, lo, c)[0],
    )
    _assert_exact(K.dmi(h, lo, c, period), ref)


@pytest.mark.parametrize("period", BB_PERIODS)
# (1.5, 1.5): equal multipliers that are not a power of two, where TA-Lib's non-FMA
# ``mid + k * sd`` (equal case) and ``fma(k, sd, mid)`` (unequal case) round differently.
@pytest.mark.parametrize(("up", "dn"), [(2.0, 2.0), (1.5, 1.5), (2.0, 1.5), (1.0, 3.0), (0.0, 0.0)])
def test_bbands_matches_talib(period: int, up: float, dn: float) -> None:
    x = _panel1([period - 1])
    ref = _talib_rowwise(lambda a: talib.BBANDS(a, period, up, dn, SMA), x)
    _assert_exact(K.bbands(x, period, up, dn), ref)


@pytest.mark.parametrize("period", MINMAX_PERIODS)
def test_rolling_max_min_match_talib(period: int) -> None:
    x = _panel1([period - 1])
    _assert_exact(K.rolling_max(x, period), _talib_rowwise(lambda a: talib.MAX(a, period), x))
    _assert_exact(K.rolling_min(x, period), _talib_rowwise(lambda a: talib.MIN(a, period), x))


@pytest.mark.parametrize("period", [2, 3, 5, 20, 21, 63, 252])
def test_rolling_std_matches_numpy(period: int) -> None:
    x = _panel1([period - 1])
    returns = np.diff(np.log(np.abs(x) + 1.0), axis=1)
    for data in (x, returns):
        ref = _windows_ref(data, period, lambda w: np.std(w, axis=-1, ddof=1))
        # np.std sums pairwise: bit-equality is impossible, 1e-9 relative is the spec.
        _assert_close(K.rolling_std(data, period), ref)


def test_talib_wrapper_on_untrimmed_rows_agrees() -> None:
    """The talib wrapper itself skips leading NaNs: untrimmed rows give the same values."""
    x = _panel1([13])
    h, lo, c = _panel3([14, 27])
    for r in range(N_ROWS):
        np.testing.assert_array_equal(K.ema(x[r], 14), talib.EMA(x[r], 14))
        np.testing.assert_array_equal(K.rsi(x[r], 14), talib.RSI(x[r], 14))
        np.testing.assert_array_equal(
            K.atr(h[r], lo[r], c[r], 14), talib.ATR(h[r], lo[r], c[r], 14)
        )
        np.testing.assert_array_equal(
            K.dmi(h[r], lo[r], c[r], 14)[2], talib.ADX(h[r], lo[r], c[r], 14)
        )


def test_last_valid() -> None:
    x = _panel1([5])
    np.testing.assert_array_equal(K.last_valid(x), x[:, -1])
    assert K.last_valid(x[3]).shape == ()
    assert float(K.last_valid(x[3])) == x[3, -1]
    with pytest.raises(ValueError):
        K.last_valid(np.empty((2, 0)))


# ---------------------------------------------------------------------------------------
# Edge cases (each compared with TA-Lib on the same 1D series)
# ---------------------------------------------------------------------------------------


def _edge_series() -> dict[str, FloatArray]:
    rng = np.random.default_rng(5)
    n = 3000  # long enough for BBANDS' every-32*period re-anchor at the tested periods
    t = np.arange(n, dtype=np.float64)
    spike = 10.0 + rng.normal(0.0, 1e-9, n)
    spike[1000] = 1e6
    return {
        "flat": np.full(n, 42.17),
        "flat_tenth": np.full(n, 0.1),
        "huge": 1e12 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n))),
        "tiny": 1e-4 * np.exp(np.cumsum(rng.normal(0.0, 0.05, n))),
        "gapped": _series(2, n, rng),
        "ticks_flat_run": _series(3, n, rng),
        "up": 1.0 + 0.37 * t,
        "down": 5000.0 - 0.37 * t,
        "spike": spike,
        "low_vol_high_level": 1e6 + rng.normal(0.0, 1e-4, n),
        "few_levels": rng.integers(0, 3, n).astype(np.float64),
    }


EDGE = _edge_series()


@pytest.mark.parametrize("name", sorted(EDGE))
def test_single_input_edge_cases(name: str) -> None:
    x = EDGE[name]
    for p in (1, 2, 3, 14, 20, 50):
        _assert_exact(K.sma(x, p), (talib.SMA(x, p),))
        _assert_exact(K.ema(x, p), (talib.EMA(x, p),))
    for p in (2, 3, 14, 20, 50):
        _assert_exact(K.rsi(x, p), (talib.RSI(x, p),))
        _assert_exact(K.rolling_max(x, p), (talib.MAX(x, p),))
        _assert_exact(K.rolling_min(x, p), (talib.MIN(x, p),))
        for up, dn in ((2.0, 2.0), (2.5, 2.5), (2.5, 1.5)):
            _assert_exact(K.bbands(x, p, up, dn), talib.BBANDS(x, p, up, dn, SMA))
    for f, s, g in ((12, 26, 9), (26, 12, 9), (12, 26, 1)):
        _assert_exact(K.macd(x, f, s, g), talib.MACD(x, f, s, g))


@pytest.mark.parametrize("name", sorted(EDGE))
@pytest.mark.parametrize("high_equals_low", [False, True])
def test_hlc_edge_cases(name: str, high_equals_low: bool) -> None:
    c = EDGE[name]
    if high_equals_low:
        h = lo = c
    else:
        h, lo = c + np.abs(c) * 0.01, c - np.abs(c) * 0.01
    for p in (1, 2, 14, 50):
        _assert_exact(K.atr(h, lo, c, p), (talib.ATR(h, lo, c, p),))
    for p in (2, 3, 14, 50):
        ref = (talib.PLUS_DI(h, lo, c, p), talib.MINUS_DI(h, lo, c, p), talib.ADX(h, lo, c, p))
        _assert_exact(K.dmi(h, lo, c, p), ref)


def test_flat_input_values() -> None:
    x = np.full(100, 7.25)
    rsi = K.rsi(x, 14)
    assert np.all(rsi[14:] == 0.0)
    assert np.isnan(rsi[:14]).all()
    upper, middle, lower = K.bbands(x, 20, 2.0, 2.0)
    np.testing.assert_array_equal(upper[19:], middle[19:])
    np.testing.assert_array_equal(lower[19:], middle[19:])
    np.testing.assert_array_equal(K.rolling_std(x, 20)[19:], np.zeros(81))
    plus_di, minus_di, adx = K.dmi(x, x, x, 14)  # no range at all: TR == 0
    assert np.all(plus_di[14:] == 0.0)
    assert np.all(minus_di[14:] == 0.0)
    assert np.all(adx[27:] == 0.0)
    _assert_exact(
        K.dmi(x, x, x, 14),
        (talib.PLUS_DI(x, x, x, 14), talib.MINUS_DI(x, x, x, 14), talib.ADX(x, x, x, 14)),
    )


def test_short_rows() -> None:
    rng = np.random.default_rng(3)
    for n in range(30):
        x = 50.0 + np.cumsum(rng.normal(0.0, 1.0, n))
        h, lo = x + 0.5, x - 0.5
        for p in (1, 2, 5, 14):
            _assert_exact(K.sma(x, p), (talib.SMA(x, p),))
            _assert_exact(K.ema(x, p), (talib.EMA(x, p),))
            _assert_exact(K.atr(h, lo, x, p), (talib.ATR(h, lo, x, p),))
        for p in (2, 5, 14):
            _assert_exact(K.rsi(x, p), (talib.RSI(x, p),))
            _assert_exact(K.rolling_max(x, p), (talib.MAX(x, p),))
            _assert_exact(K.bbands(x, p, 2.0, 2.0), talib.BBANDS(x, p, 2.0, 2.0, SMA))
            ref = (talib.PLUS_DI(h, lo, x, p), talib.MINUS_DI(h, lo, x, p), talib.ADX(h, lo, x, p))
            _assert_exact(K.dmi(h, lo, x, p), ref)
        _assert_exact(K.macd(x, 3, 5, 2), talib.MACD(x, 3, 5, 2))
    # A panel whose every row is shorter than the lookback is all NaN.
    assert np.isnan(K.sma(np.ones((3, 4)), 5)).all()
    assert K.ema(np.empty((0, 10)), 3).shape == (0, 10)
    assert K.rsi(np.empty((2, 0)), 3).shape == (2, 0)


def test_signed_zero_ties_are_bit_identical() -> None:
    x = np.array([0.0, -0.0, 0.0, -0.0, -0.0, 0.0, -1.0, -0.0, 0.0, 1.0, 0.0, -0.0] * 3)
    for p in (2, 3, 4):
        for mine, ref in (
            (K.rolling_max(x, p), talib.MAX(x, p)),
            (K.rolling_min(x, p), talib.MIN(x, p)),
        ):
            np.testing.assert_array_equal(mine[p - 1 :].view(np.int64), ref[p - 1 :].view(np.int64))


def test_bbands_flat_tail_after_noise() -> None:
    """Noise then a flat stretch (TA-Lib issue #202's shape): the re-anchored variance of a
    flat window can round below zero and must be floored exactly as TA-Lib does."""
    rng = np.random.default_rng(2024)
    for k in range(60):
        n = 120 + 4 * k
        level = float(10.0 ** rng.uniform(-6.0, 6.0))
        x = level * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        x[n // 3 :] = x[n // 3] if k % 2 else level * 1.1
        for p in (5, 20, 49):
            _assert_exact(K.bbands(x, p, 2.0, 2.0), talib.BBANDS(x, p, 2.0, 2.0, SMA))


def test_prefix_ties_keep_the_earlier_bar() -> None:
    """Inside a block's forward scan TA-Lib keeps the earlier of two equal values."""
    x = np.array([-1.0, -1.0, -1.0, -0.0, 0.0, -1.0, 1.0, -0.0, 0.0, 0.0, -0.0, -1.0])
    for mine, ref in (
        (K.rolling_max(x, 3), talib.MAX(x, 3)),
        (K.rolling_min(-x, 3), talib.MIN(-x, 3)),
    ):
        np.testing.assert_array_equal(mine[2:].view(np.int64), ref[2:].view(np.int64))


def test_fma_is_fused() -> None:
    """The EMA/MACD/ATR/BBANDS helper must round once, like C's fma()."""

    @njit
    def call(a: float, b: float, c: float) -> float:
        return K._fma(a, b, c)

    a, b = 1.0 + 2.0**-30, 1.0 - 2.0**-30  # a*b = 1 - 2**-60, which rounds to 1.0
    assert a * b - 1.0 == 0.0
    assert call(a, b, -1.0) == -(2.0**-60)


# ---------------------------------------------------------------------------------------
# Properties (hypothesis) and independent brute-force references
# ---------------------------------------------------------------------------------------

def fixed_and_search(**strategies: st.SearchStrategy[Any]
                     ) -> Callable[[Callable[..., None]], Callable[[str], None]]:
    """A property test run as two pytest cases, ``[fixed]`` (FIXED) and ``[search]`` (SEARCH)."""
    def wrap(prop: Callable[..., None]) -> Callable[[str], None]:
        @pytest.mark.parametrize("examples", ["fixed", "search"])
        def test(examples: str) -> None:
            run = FIXED if examples == "fixed" else SEARCH
            run(given(**strategies)(prop))()

        test.__name__, test.__doc__ = prop.__name__, prop.__doc__
        return test
    return wrap


_VALUES = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def _rows(draw: st.DrawFn, n_inputs: int = 1, max_len: int = 120) -> list[FloatArray]:
    n = draw(st.integers(0, max_len))
    lead = draw(st.integers(0, n))
    out = []
    for _ in range(n_inputs):
        a = draw(arrays(np.float64, n, elements=_VALUES))
        a[:lead] = np.nan
        out.append(a)
    return out


@fixed_and_search(rows=_rows(), period=st.integers(1, 30))
def test_property_single_input_matches_talib(rows: list[FloatArray], period: int) -> None:
    (x,) = rows
    _assert_exact(K.sma(x, period), (talib.SMA(x, period),))
    _assert_exact(K.ema(x, period), (talib.EMA(x, period),))
    if period >= 2:
        _assert_exact(K.rsi(x, period), (talib.RSI(x, period),))
        _assert_exact(K.rolling_max(x, period), (talib.MAX(x, period),))
        _assert_exact(K.rolling_min(x, period), (talib.MIN(x, period),))
        _assert_exact(K.bbands(x, period, 2.0, 1.5), talib.BBANDS(x, period, 2.0, 1.5, SMA))


@fixed_and_search(rows=_rows(), fast=st.integers(2, 15), slow=st.integers(2, 30), signal=st.integers(1, 10))
def test_property_macd_matches_talib(
    rows: list[FloatArray], fast: int, slow: int, signal: int
) -> None:
    (x,) = rows
    _assert_exact(K.macd(x, fast, slow, signal), talib.MACD(x, fast, slow, signal))


@fixed_and_search(rows=_rows(n_inputs=3), period=st.integers(1, 25))
def test_property_hlc_matches_talib(rows: list[FloatArray], period: int) -> None:
    # Independent arrays: TA-Lib's arithmetic does not assume low <= close <= high.
    h, lo, c = rows
    _assert_exact(K.atr(h, lo, c, period), (talib.ATR(h, lo, c, period),))
    if period >= 2:
        ref = (
            talib.PLUS_DI(h, lo, c, period),
            talib.MINUS_DI(h, lo, c, period),
            talib.ADX(h, lo, c, period),
        )
        _assert_exact(K.dmi(h, lo, c, period), ref)


@fixed_and_search(rows=_rows(max_len=200), period=st.integers(2, 40))
def test_property_brute_force_windows(rows: list[FloatArray], period: int) -> None:
    (x,) = rows
    # max / min of a window are exact operations: compare exactly.
    np.testing.assert_array_equal(
        K.rolling_max(x, period), _windows_ref(x, period, lambda w: w.max(axis=-1))
    )
    np.testing.assert_array_equal(
        K.rolling_min(x, period), _windows_ref(x, period, lambda w: w.min(axis=-1))
    )
    # np.mean / np.std sum pairwise (a different order): 1e-9 relative is the spec.
    _assert_close(K.sma(x, period), _windows_ref(x, period, lambda w: w.mean(axis=-1)))
    _assert_close(
        K.rolling_std(x, period), _windows_ref(x, period, lambda w: w.std(axis=-1, ddof=1))
    )


def _fma_exact(a: float, b: float, c: float) -> float:
    return float(Fraction(a) * Fraction(b) + Fraction(c))  # correctly rounded, like fma()


def _ema_reference(x: FloatArray, period: int) -> FloatArray:
    """TA-Lib 0.8.1's EMA written out in plain Python (exact-rational fma)."""
    out = np.full(x.shape, np.nan)
    if period == 1:
        return x.copy()
    if x.shape[0] < period:
        return out
    total = 0.0
    for v in x[:period]:
        total += float(v)
    prev = total / period
    out[period - 1] = prev
    k = 2.0 / (period + 1)
    for i in range(period, x.shape[0]):
        prev = _fma_exact(float(x[i]) - prev, k, prev)
        out[i] = prev
    return out


@fixed_and_search(x=arrays(np.float64, st.integers(0, 80), elements=_VALUES), period=st.integers(1, 20))
def test_property_ema_equals_python_reference(x: FloatArray, period: int) -> None:
    np.testing.assert_array_equal(K.ema(x, period), _ema_reference(x, period))


# ---------------------------------------------------------------------------------------
# API contract
# ---------------------------------------------------------------------------------------


def test_input_layouts_and_no_mutation() -> None:
    x = _panel1([19])
    h, lo, c = _panel3([14])
    x_before = x.copy()
    base = K.bbands(x, 20, 2.0, 2.0)
    _assert_exact(K.bbands(np.asfortranarray(x), 20, 2.0, 2.0), base)
    wide = np.full((N_ROWS, 2 * N_BARS), np.nan)
    wide[:, ::2] = x
    _assert_exact(K.bbands(wide[:, ::2], 20, 2.0, 2.0), base)  # strided view
    _assert_exact(K.sma(x.tolist(), 5), (K.sma(x, 5),))  # nested lists
    np.testing.assert_array_equal(x, x_before)
    # 1D in -> 1D out, identical to the corresponding panel row
    one = K.dmi(h[2], lo[2], c[2], 14)
    assert all(o.shape == (N_BARS,) for o in one)
    _assert_exact(one, tuple(o[2] for o in K.dmi(h, lo, c, 14)))


def test_invalid_arguments() -> None:
    x = np.ones((2, 50))
    for bad in (lambda: K.sma(x, 0), lambda: K.ema(x, 100_001), lambda: K.rsi(x, 1)):
        with pytest.raises(ValueError):
            bad()
    for bad in (
        lambda: K.rolling_max(x, 1),
        lambda: K.rolling_min(x, 1),
        lambda: K.rolling_std(x, 1),
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        K.dmi(x, x, x, 1)
    with pytest.raises(ValueError):
        K.macd(x, 1, 26, 9)
    with pytest.raises(ValueError):
        K.macd(x, 12, 26, 0)
    with pytest.raises(ValueError):
        K.bbands(x, 20, 4e37, 2.0)
    with pytest.raises(ValueError):
        K.atr(x, x, np.ones((2, 49)), 14)
    with pytest.raises(ValueError):
        K.atr(x[0], x, x, 14)
    with pytest.raises(ValueError):
        K.sma(np.ones((2, 2, 2)), 2)


def test_kernels_are_nogil_serial_and_not_fastmath() -> None:
    cores = [getattr(K, name) for name in dir(K) if name.startswith("_") and name.endswith("_core")]
    assert len(cores) == 10  # nine indicator cores and the scan's combined entry point
    for core in cores:
        opts = core.targetoptions
        assert opts.get("nogil") is True
        assert not opts.get("fastmath", False)
        assert not opts.get("parallel", False)
        assert core._cache.__class__.__name__ != "NullCache"  # cache=True


def test_row_chunks_in_threads_match_whole_panel() -> None:
    h, lo, c = _panel3([14, 27])
    whole = K.dmi(h, lo, c, 14) + K.macd(c, 12, 26, 9) + (K.rolling_std(c, 20),)
    chunks = [slice(i, i + 7) for i in range(0, N_ROWS, 7)]
    barrier = threading.Barrier(len(chunks))

    def run(sl: slice) -> tuple[FloatArray, ...]:
        barrier.wait()
        return (
            K.dmi(h[sl], lo[sl], c[sl], 14) + K.macd(c[sl], 12, 26, 9) + (K.rolling_std(c[sl], 20),)
        )

    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(run, chunks))
    _assert_exact(tuple(np.vstack([p[i] for p in parts]) for i in range(len(whole))), whole)


def test_scan_last_equals_the_public_functions() -> None:
    rng = np.random.default_rng(11)
    n_rows, n = 40, 320
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_rows, n)), axis=1))
    h = c * np.exp(np.abs(rng.normal(0, 0.01, (n_rows, n))))
    lo = c * np.exp(-np.abs(rng.normal(0, 0.01, (n_rows, n))))
    for r, lead in enumerate((0, 1, 13, 100, 121, 300, 319, 320)):
        for a in (c, h, lo):
            a[r, :lead] = np.nan
    got = K.scan_last(c, h, lo, c)
    macd_l, sig_l, hist_l = K.macd(c, 12, 26, 9)
    pdi, mdi, adx = K.dmi(h, lo, c, 14)
    up, mid, dn = K.bbands(c, 20, 2.0, 2.0)
    want = {"SMA20": K.sma(c, 20), "SMA50": K.sma(c, 50),
            "SMA200": K.sma(c, 200), "EMA21": K.ema(c, 21),
            "RSI14": K.rsi(c, 14), "MACD": macd_l, "MACDSignal": sig_l,
            "MACDHist": hist_l, "ATR14": K.atr(h, lo, c, 14), "PlusDI14": pdi,
            "MinusDI14": mdi, "ADX14": adx, "BBUpper": up, "BBMiddle": mid, "BBLower": dn}
    assert set(got) == set(want) == set(K.SCAN_COLUMNS)
    for name, series in want.items():
        np.testing.assert_array_equal(got[name], series[:, -1], err_msg=name)
    empty = K.scan_last(np.empty((3, 0)), np.empty((3, 0)), np.empty((3, 0)),
                              np.empty((3, 0)))
    assert all(np.isnan(v).all() and v.shape == (3,) for v in empty.values())
