"""Forward returns against a plain-Python reference of the documented rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_v4.backtest.returns import (
    excess_returns,
    forward_return_panels,
    forward_returns,
    universe_mean,
)
from technic_v4.errors import ConfigError

NAN = float("nan")


def random_market(seed: int, n: int, t: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Prices with late listings, halts (holes), a few delistings with a cash-out price."""
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.03, (n, t)), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.01, (n, t)))
    open_[rng.random((n, t)) < 0.05] = NAN          # an open missing here and there
    close[rng.random((n, t)) < 0.05] = NAN          # halts
    delist = np.full(n, -1, dtype=np.int64)
    price = np.full(n, NAN)
    for i in range(n):
        first = int(rng.integers(0, max(1, t // 2)))
        close[i, :first] = NAN
        open_[i, :first] = NAN
        if rng.random() < 0.4:
            k = int(rng.integers(first, t))
            close[i, k] = 20.0 if math.isnan(close[i, k]) else close[i, k]
            delist[i] = k
            price[i] = close[i, k] * rng.choice([1.0, 0.5, 0.0])   # last close, cut, worthless
            close[i, k + 1:] = NAN
            open_[i, k + 1:] = NAN
    return open_, close, delist, price


def reference(open_: np.ndarray, close: np.ndarray, h: int, entry: str,
              delist: np.ndarray, price: np.ndarray) -> np.ndarray:
    """The module docstring's rules, one (listing, session) at a time."""
    n, t = close.shape
    out = np.full((n, t), NAN)
    for i in range(n):
        k = int(delist[i])
        for d in range(t):
            e = d + h
            if e >= t or math.isnan(close[i, d]) or (k >= 0 and d > k):
                continue
            entry_t = d + 1 if entry == "open" else d
            px = open_[i, d + 1] if entry == "open" else close[i, d]
            if not (math.isfinite(px) and px > 0):
                continue
            if k >= 0 and e >= k:
                exit_px, exit_t = price[i], k
            else:
                s = e
                while s >= 0 and math.isnan(close[i, s]):
                    s -= 1
                if s < 0:
                    continue
                exit_px, exit_t = close[i, s], s
            if exit_t < entry_t:
                continue
            out[i, d] = exit_px / px - 1.0
    return out


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), t=st.integers(1, 30),
       h=st.integers(1, 8), entry=st.sampled_from(["open", "close"]))
def test_forward_returns_equal_brute_force(seed: int, n: int, t: int, h: int,
                                           entry: str) -> None:
    open_, close, delist, price = random_market(seed, n, t)
    got = forward_returns(open_, close, h, entry=entry,  # type: ignore[arg-type]
                          delist_session=delist, delist_price=price)
    np.testing.assert_array_equal(got, reference(open_, close, h, entry, delist, price))


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(2, 30), h=st.integers(1, 6),
       cut=st.integers(0, 29), entry=st.sampled_from(["open", "close"]))
def test_truncating_after_a_session_changes_nothing_before_it(
        seed: int, t: int, h: int, cut: int, entry: str) -> None:
    """What a store truncated at session ``cut`` knows gives the same returns for every
    signal whose horizon ends by ``cut``; later ones are NaN, never guessed."""
    open_, close, delist, price = random_market(seed, 6, t)
    cut = min(cut, t - 1)
    full = forward_returns(open_, close, h, entry=entry,  # type: ignore[arg-type]
                           delist_session=delist, delist_price=price)
    known = delist <= cut        # a delisting after the cut is not known yet
    part = forward_returns(open_[:, :cut + 1], close[:, :cut + 1], h,
                           entry=entry,  # type: ignore[arg-type]
                           delist_session=np.where(known, delist, -1),
                           delist_price=np.where(known, price, NAN))
    done = max(0, cut - h + 1)   # sessions d with d + h <= cut
    np.testing.assert_array_equal(part[:, :done], full[:, :done])
    assert np.isnan(part[:, done:]).all()


def test_delisted_listing_exits_at_its_delisting_price() -> None:
    close = np.array([[10.0, 11.0, 12.0, NAN, NAN, NAN]])
    open_ = np.array([[10.0, 10.5, 11.5, NAN, NAN, NAN]])
    # Delisted on session 2 and cashed out at 6 (a bankruptcy haircut): every horizon from
    # session 0 or 1 that ends on or after session 2 earns the delisting return.
    got = forward_returns(open_, close, 3, delist_session=np.array([2]),
                          delist_price=np.array([6.0]))
    np.testing.assert_array_equal(got[0], [6.0 / 10.5 - 1, 6.0 / 11.5 - 1, NAN, NAN, NAN, NAN])
    by_close = forward_returns(None, close, 3, entry="close", delist_session=np.array([2]),
                               delist_price=np.array([6.0]))
    np.testing.assert_array_equal(by_close[0], [6.0 / 10 - 1, 6.0 / 11 - 1, 6.0 / 12 - 1,
                                                NAN, NAN, NAN])
    # Without the delisting the same listing silently holds its last close.
    plain = forward_returns(open_, close, 3)
    assert plain[0, 0] == 12.0 / 10.5 - 1


def test_horizon_past_the_last_session_is_nan_and_entry_is_next_open() -> None:
    close = np.array([[1.0, 2.0, 4.0, 8.0]])
    open_ = np.array([[1.0, 1.5, 3.0, 6.0]])
    np.testing.assert_array_equal(forward_returns(open_, close, 1)[0],
                                  [2.0 / 1.5 - 1, 4.0 / 3.0 - 1, 8.0 / 6.0 - 1, NAN])
    np.testing.assert_array_equal(forward_returns(open_, close, 2, entry="close")[0],
                                  [3.0, 3.0, NAN, NAN])
    # No bar at the next session: the trade cannot be entered.
    hole = open_.copy()
    hole[0, 1] = NAN
    assert np.isnan(forward_returns(hole, close, 2)[0, 0])
    # 1D rows (a benchmark) give 1D results.
    assert forward_returns(open_[0], close[0], 1).shape == (4,)


def test_universe_and_benchmark_excess() -> None:
    open_, close, delist, price = random_market(7, 12, 40)
    bo, bc = open_[0].copy(), close[0].copy()
    bo[np.isnan(bo)] = 20.0
    bc[np.isnan(bc)] = 20.0
    uni = np.random.default_rng(1).random(close.shape) < 0.7
    panels = forward_return_panels(open_, close, (1, 5), delist_session=delist,
                                   delist_price=price, benchmark_open=bo, benchmark_close=bc,
                                   universe=uni)
    assert sorted(panels) == [1, 5]
    for h, fr in panels.items():
        raw = reference(open_, close, h, "open", delist, price)
        np.testing.assert_array_equal(fr.raw, raw)
        bench = reference(bo[None], bc[None], h, "open", np.array([-1]), np.array([NAN]))[0]
        np.testing.assert_array_equal(fr.benchmark, bench)
        for d in range(close.shape[1]):
            vals = [raw[i, d] for i in range(close.shape[0])
                    if uni[i, d] and math.isfinite(raw[i, d])]
            want = sum(vals) / len(vals) if vals else NAN
            assert fr.universe[d] == pytest.approx(want, nan_ok=True, rel=1e-12, abs=1e-15)
        np.testing.assert_array_equal(fr.over_universe, raw - fr.universe[None, :])
        np.testing.assert_array_equal(fr.over_benchmark, raw - bench[None, :])
    # Without a mask the universe is every listing with a return that session.
    raw1 = panels[1].raw
    ok = np.isfinite(raw1).any(axis=0)
    np.testing.assert_allclose(universe_mean(raw1)[ok], np.nanmean(raw1[:, ok], axis=0))
    np.testing.assert_array_equal(excess_returns(raw1, np.ones(raw1.shape[1])), raw1 - 1)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"horizon": 0}, "horizon"),
    ({"horizon": 2.5}, "horizon"),
    ({"entry": "mid"}, "entry"),
    ({"open_": None}, "open"),
    ({"open_": np.ones((2, 4))}, "open"),
    ({"delist_session": np.array([1, 2])}, "delist_session"),
    ({"delist_session": np.array([1, 2]), "delist_price": np.ones(2)}, "delist_session"),
])
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"open_": np.ones((3, 4)), "close": np.ones((3, 4)),
                               "horizon": 1}
    args.update(kwargs)
    with pytest.raises(ConfigError) as err:
        forward_returns(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_panels_reject_open_entry_without_benchmark_open() -> None:
    with pytest.raises(ConfigError, match="benchmark_open"):
        forward_return_panels(np.ones((2, 5)), np.ones((2, 5)), (1,),
                              benchmark_close=np.ones(5))
    with pytest.raises(ConfigError, match="horizons"):
        forward_return_panels(np.ones((2, 5)), np.ones((2, 5)), (1, 1))


def test_threads_give_the_same_numbers() -> None:
    open_, close, delist, price = random_market(3, 23, 50)
    one = forward_returns(open_, close, 5, delist_session=delist, delist_price=price)
    many = forward_returns(open_, close, 5, delist_session=delist, delist_price=price, workers=4)
    np.testing.assert_array_equal(one, many)
    with pytest.raises(ConfigError, match="workers"):
        forward_returns(open_, close, 5, workers=0)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8), t=st.integers(1, 30),
       h=st.integers(1, 8), entry=st.sampled_from(["open", "close"]))
def test_forward_returns_at_cells_equal_the_panel(seed: int, n: int, t: int, h: int,
                                                  entry: str) -> None:
    """At any (listing, session) cells, in any order: the panel's values, bit for bit; and
    the per-session mean of cells grouped by session equals universe_mean."""
    from technic_v4.backtest.returns import forward_returns_at, universe_mean_at

    o, c, delist, price = random_market(seed, n, t)
    rng = np.random.default_rng(seed)
    full = forward_returns(o, c, h, entry=entry, delist_session=delist,  # type: ignore[arg-type]
                           delist_price=price)
    li, si = rng.integers(0, n, 50), rng.integers(0, t, 50)
    got = forward_returns_at(o, c, h, li, si, entry=entry,  # type: ignore[arg-type]
                             delist_session=delist, delist_price=price)
    np.testing.assert_array_equal(got, full[li, si])
    use = rng.random((n, t)) < 0.6
    s, i = np.nonzero(use.T)  # session-major, listings ascending
    start = np.searchsorted(s, np.arange(t + 1))
    np.testing.assert_array_equal(universe_mean_at(start, full[i, s]), universe_mean(full, use))
    with pytest.raises(ConfigError, match="listing"):
        forward_returns_at(o, c, h, np.array([n]), np.array([0]), entry=entry)  # type: ignore[arg-type]
