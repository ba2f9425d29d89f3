"""The screen language's indicator implementations against TA-Lib, bit for bit.

Each ``IMPLS`` entry runs on random panels (right-aligned rows with NaN padding, some rows
shorter than the lookback, some empty) and must equal TA-Lib's function (the pinned ``ta-lib``
wheel, through its abstract API driven by the catalogue's ``talib``/``output``) run on each row's
non-padded bars, with ``assert_array_equal``: every kernel here is exact, none is only close.
Flat windows, zero volume and zero closes exercise TA-Lib's special cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from talib import abstract

from technic_v4.errors import ConfigError
from technic_v4.terms.catalog import FUNCTIONS, ta_function
from technic_v4.terms.kernels.indicators import IMPLS, ta_impl


@dataclass(frozen=True)
class Bars:  # the fields of technic_v4.terms.kernels.Bars that implementations read
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    day: np.ndarray


# Catalogue parameter names -> TA-Lib's (bb's k sets both deviations).
_TALIB_PARAM = {"n": ("timeperiod",), "fast": ("fastperiod",), "slow": ("slowperiod",),
                "signal": ("signalperiod",), "k": ("nbdevup", "nbdevdn"),
                "fastk": ("fastk_period",), "slowk": ("slowk_period",),
                "slowd": ("slowd_period",)}

NAMES = ["sma", "ema", "wma", "rsi", "roc", "mom", "atr", "natr", "adx", "plus_di", "minus_di",
         "cci", "mfi", "willr", "obv", "macd", "macd_signal", "macd_hist", "bb_upper",
         "bb_middle", "bb_lower", "stoch_k", "stoch_d"]


def make_bars(seed: int, n_rows: int = 40, n_bars: int = 90, kind: str = "random",
              scale: float = 50.0) -> Bars:
    """Random OHLCV rows, right-aligned with a random amount of NaN padding (some rows empty).

    ``kind="flat"`` rounds prices to a coarse grid and zeroes a third of the volumes, so that
    windows with high == low, unchanged typical prices and no money flow are common.
    """
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.02, (n_rows, n_bars)), axis=1))
    high = close * (1 + rng.random((n_rows, n_bars)) * 0.03)
    low = close * (1 - rng.random((n_rows, n_bars)) * 0.03)
    opn = low + (high - low) * rng.random((n_rows, n_bars))
    volume = rng.integers(0, 10_000, (n_rows, n_bars)).astype(float)
    if kind == "flat":
        step = scale * 0.0137  # a grid step that is not a binary fraction: ties in exact
        # arithmetic come out a few ulps apart (the zero bands decide them)
        close = np.round(close / step) * step
        opn = np.round(opn / step) * step
        high = np.maximum(np.maximum(close, opn), np.round(high / step) * step)
        low = np.minimum(np.minimum(close, opn), np.round(low / step) * step)
        volume[rng.random((n_rows, n_bars)) < 0.35] = 0.0
        close[rng.random((n_rows, n_bars)) < 0.02] = 0.0  # a zero close (NATR, ROC)
        low = np.minimum(low, close)
    pad = rng.integers(0, n_bars + 1, n_rows)
    pad[:3] = (0, n_bars, n_bars - 1)  # a full row, an empty row, a one-bar row
    day = np.tile(np.arange(n_bars, dtype=np.int32), (n_rows, 1))
    for r in range(n_rows):
        for a in (opn, high, low, close, volume):
            a[r, : pad[r]] = np.nan
        day[r, : pad[r]] = -1
    return Bars(opn, high, low, close, volume, day)


def reference(name: str, bars: Bars, x: np.ndarray | None, params: dict[str, Any]) -> np.ndarray:
    """TA-Lib on each row's non-padded bars (first bar where every input is defined), written
    back right-aligned."""
    f = FUNCTIONS[name]
    fn = abstract.Function(f.talib)
    fn.set_parameters({t: v for key, v in params.items() for t in _TALIB_PARAM[key]})
    fields = {"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
              "volume": bars.volume}
    if x is not None:
        fields["close"] = x  # TA-Lib's single series input is "close" by default
    used = [fields[n] for n in ("high", "low", "close", "volume")
            if n in f.implicit or n == "close"]
    out = np.full(bars.close.shape, np.nan)
    for r in range(out.shape[0]):
        ok = np.ones(out.shape[1], dtype=bool)
        for a in used:
            ok &= ~np.isnan(a[r])
        if not ok.any():
            continue
        b = int(ok.argmax())
        res = fn({k: v[r, b:] for k, v in fields.items()})
        if isinstance(res, list):
            res = res[fn.info["output_names"].index(f.output)]
        out[r, b:] = res
    return out


def run(name: str, bars: Bars, x: np.ndarray | None, params: dict[str, Any]) -> np.ndarray:
    series = (x,) if x is not None else ()
    return IMPLS[name](bars, series, params)


def defaults(name: str) -> dict[str, Any]:
    return {p.name: p.default for p in FUNCTIONS[name].params if p.kind != "series"}


def series_arg(name: str, bars: Bars) -> np.ndarray | None:
    return bars.close if FUNCTIONS[name].params[0].kind == "series" else None


def test_every_issue_indicator_is_implemented() -> None:
    assert sorted(IMPLS) == sorted(NAMES)


# Edge periods: the smallest TA-Lib accepts, 2, typical, and longer than every row.
_PARAM_SETS: dict[str, list[dict[str, Any]]] = {
    "n": [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 14}, {"n": 30}, {"n": 120}],
    "macd": [{"fast": 12, "slow": 26, "signal": 9}, {"fast": 2, "slow": 2, "signal": 1},
             {"fast": 30, "slow": 5, "signal": 2}, {"fast": 50, "slow": 60, "signal": 40}],
    "bb": [{"n": 20, "k": 2.0}, {"n": 2, "k": 1.5}, {"n": 5, "k": 0.0}, {"n": 120, "k": 2.0}],
    "stoch": [{"fastk": 5, "slowk": 3, "slowd": 3}, {"fastk": 1, "slowk": 1, "slowd": 1},
              {"fastk": 14, "slowk": 1, "slowd": 3}, {"fastk": 3, "slowk": 5, "slowd": 1},
              {"fastk": 40, "slowk": 30, "slowd": 30}],
}


def _cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for name in NAMES:
        f = FUNCTIONS[name]
        group = ("macd" if name.startswith("macd") else "bb" if name.startswith("bb_")
                 else "stoch" if name.startswith("stoch") else "n")
        if name == "obv":
            cases.append((name, {}))
            continue
        minimum = next((p.minimum for p in f.params if p.name == "n"), 1)
        for params in _PARAM_SETS[group]:
            if params.get("n", minimum) >= minimum:
                cases.append((name, params))
    return cases


@pytest.mark.parametrize("kind", ["random", "flat"])
@pytest.mark.parametrize(("name", "params"), _cases(),
                         ids=[f"{n}-{'-'.join(map(str, p.values()))}" for n, p in _cases()])
def test_equals_talib_bit_for_bit(name: str, params: dict[str, Any], kind: str) -> None:
    bars = make_bars(7, kind=kind)
    x = series_arg(name, bars)
    np.testing.assert_array_equal(run(name, bars, x, params), reference(name, bars, x, params))


@pytest.mark.parametrize("scale", [0.002, 30_000.0])
@pytest.mark.parametrize("name", NAMES)
def test_equals_talib_at_penny_and_large_prices(name: str, scale: float) -> None:
    """The zero bands (1e-14 absolute, or relative to the operands) at both ends of the
    price range."""
    for kind in ("random", "flat"):
        bars = make_bars(11, kind=kind, scale=scale)
        x = series_arg(name, bars)
        np.testing.assert_array_equal(run(name, bars, x, defaults(name)),
                                      reference(name, bars, x, defaults(name)))


@pytest.mark.parametrize("name", [n for n in NAMES if FUNCTIONS[n].params[0].kind == "series"])
def test_series_argument_with_its_own_padding(name: str) -> None:
    """``x`` may be another term (here an SMA of the open, with more NaN than the bars)."""
    bars = make_bars(3)
    x = IMPLS["sma"](bars, (bars.open,), {"n": 7})
    np.testing.assert_array_equal(run(name, bars, x, defaults(name)),
                                  reference(name, bars, x, defaults(name)))


def test_talib_wrapper_skips_leading_nan_like_the_reference() -> None:
    """``talib.FUNC(row)`` on a padded row equals the reference on the sliced row."""
    bars = make_bars(5)
    for name in ("sma", "wma", "cci", "mfi", "stoch_k"):
        f = FUNCTIONS[name]
        p = defaults(name)
        kwargs = {t: v for key, v in p.items() for t in _TALIB_PARAM[key]}
        inputs = [getattr(bars, field)
                  for field in ("high", "low", "close", "volume")
                  if field in f.implicit] or [bars.close]
        ref = reference(name, bars, series_arg(name, bars), p)
        for r in range(3, bars.close.shape[0]):
            if np.isnan(bars.close[r]).all():
                continue
            res = getattr(talib, f.talib)(*(a[r] for a in inputs), **kwargs)
            res = res[0] if isinstance(res, tuple) else res
            np.testing.assert_array_equal(res, ref[r])


@pytest.mark.parametrize("price", [10.0, 65.1, 1234.567, 30_000.3])
def test_flat_and_zero_flow_special_cases(price: float) -> None:
    """Hand-built windows: TA-Lib answers 0 for CCI with no deviation, WILLR/STOCH with
    high == low and MFI with no money flow -- also where the window mean of a constant typical
    price comes out an ulp (more than 1e-14) away from it, so only a relative zero band
    recognises the flat window."""
    n = 30
    flat = np.full((1, n), price)
    vol = np.zeros((1, n))
    bars = Bars(flat, flat, flat, flat, vol, np.zeros((1, n), dtype=np.int32))
    for name, params in (("cci", {"n": 14}), ("willr", {"n": 14}), ("mfi", {"n": 14}),
                         ("stoch_k", defaults("stoch_k")), ("stoch_d", defaults("stoch_d"))):
        got = run(name, bars, None, params)
        np.testing.assert_array_equal(got, reference(name, bars, None, params))
        assert (got[~np.isnan(got)] == 0.0).all() and (~np.isnan(got)).sum() > 0


def test_period_outside_talibs_range_is_a_config_error() -> None:
    bars = make_bars(1, n_rows=3, n_bars=10)
    with pytest.raises(ConfigError, match="n must be in"):
        IMPLS["cci"](bars, (), {"n": 1})
    with pytest.raises(ConfigError, match="k must be in"):
        IMPLS["bb_upper"](bars, (bars.close,), {"n": 5, "k": float("nan")})


_HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_HYPO
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32 - 1),
       n_bars=st.integers(1, 60), kind=st.sampled_from(["random", "flat"]),
       period=st.integers(1, 70), second=st.integers(1, 30), third=st.integers(1, 30),
       dev=st.floats(0, 4))
def test_property_equals_talib(name: str, seed: int, n_bars: int, kind: str, period: int,
                               second: int, third: int, dev: float) -> None:
    f = FUNCTIONS[name]
    params: dict[str, Any] = {}
    for p in f.params:
        if p.kind == "window":
            params[p.name] = max(int(p.minimum), {"n": period, "fast": period, "slow": second,
                                                  "signal": third, "fastk": period,
                                                  "slowk": second, "slowd": third}[p.name])
        elif p.kind == "number":
            params[p.name] = dev
    bars = make_bars(seed, n_rows=6, n_bars=n_bars, kind=kind)
    x = series_arg(name, bars)
    np.testing.assert_array_equal(run(name, bars, x, params), reference(name, bars, x, params))


# --- ta.<name>: TA-Lib itself, row by row ----------------------------------------------------
def _ta_reference(func: str, output: int | None, bars: Bars, inputs: list[np.ndarray],
                  **kwargs: Any) -> np.ndarray:
    out = np.full(bars.close.shape, np.nan)
    for r in range(out.shape[0]):
        ok = np.ones(out.shape[1], dtype=bool)
        for a in inputs:
            ok &= ~np.isnan(a[r])
        if ok.any():
            b = int(ok.argmax())
            res = getattr(talib, func)(*(a[r, b:] for a in inputs), **kwargs)
            out[r, b:] = res if output is None else res[output]
    return out


@pytest.mark.parametrize(
    ("name", "output", "params", "func", "which", "fields"),
    [
        ("kama", None, {"timeperiod": 10}, "KAMA", None, ("close",)),
        ("trix", None, {"timeperiod": 5}, "TRIX", None, ("close",)),
        ("aroon", "aroonup", {"timeperiod": 14}, "AROON", 1, ("high", "low")),
        ("aroon", "aroondown", {"timeperiod": 3}, "AROON", 0, ("high", "low")),
        ("sar", None, {"acceleration": 0.03, "maximum": 0.25}, "SAR", None, ("high", "low")),
        ("stochrsi", "fastd", {"timeperiod": 9, "fastk_period": 4, "fastd_period": 2,
                               "fastd_matype": 1}, "STOCHRSI", 1, ("close",)),
    ],
)
def test_ta_impl_is_talib_per_row(name: str, output: str | None, params: dict[str, Any],
                                  func: str, which: int | None, fields: tuple[str, ...]) -> None:
    bars = make_bars(9)
    tf = ta_function(name)
    assert tf is not None
    series = tuple(getattr(bars, p.default) for p in tf.params if p.kind == "series")
    got = ta_impl(name, output)(bars, series, params)
    expected = _ta_reference(func, which, bars, [getattr(bars, f) for f in fields], **params)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[1]).all()  # the empty row


def test_ta_impl_series_argument_and_implicit_field() -> None:
    """ta.obv(x): the series argument is the price, volume comes from the bars."""
    bars = make_bars(4)
    x = IMPLS["ema"](bars, (bars.open,), {"n": 5})
    got = ta_impl("obv", None)(bars, (x,), {})
    np.testing.assert_array_equal(got, _ta_reference("OBV", None, bars, [x, bars.volume]))


def test_ta_impl_errors_name_what_to_fix() -> None:
    bars = make_bars(2, n_rows=3, n_bars=20)
    with pytest.raises(ConfigError, match=r"no output 'up'.*aroondown, aroonup"):
        ta_impl("aroon", "up")
    with pytest.raises(ConfigError, match="no parameter 'period'"):
        ta_impl("kama", None)(bars, (bars.close,), {"period": 3})
    with pytest.raises(ConfigError, match=r"ta\.kama"):
        ta_impl("kama", None)(bars, (bars.close,), {"timeperiod": 0})
