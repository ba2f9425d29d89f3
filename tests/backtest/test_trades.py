"""Trade plans played out and the equal-risk portfolio: hand-built bars for every exit rule,
brute-force Python loops on random panels (hypothesis), and no-peek truncation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_v4.backtest.trades import (
    CLOSED_REASONS,
    simulate_portfolio,
    simulate_trades,
    trade_summary,
)
from technic_v4.errors import ConfigError

PROPERTY = settings(max_examples=40, deadline=None)
NAN = math.nan


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def bars(*rows: tuple[float, float, float, float] | None) -> tuple[np.ndarray, ...]:
    """One listing's (open, high, low, close) panels from OHLC tuples; None is no bar."""
    ohlc = np.array([(NAN,) * 4 if r is None else r for r in rows], dtype=np.float64)
    return tuple(ohlc[:, k][None, :].copy() for k in range(4))


def one(panel: tuple[np.ndarray, ...], *, d: int = 0, stop: float = 95.0, target: float = 110.0,
        **kw: Any) -> pd.Series:
    tr = simulate_trades(*panel, listing=[0], session=[d], stop=[stop], target=[target], **kw)
    return tr.iloc[0]


FLAT = (100.0, 101.0, 99.0, 100.0)


def random_panel(rng: np.random.Generator, n: int, t: int) -> tuple[np.ndarray, ...]:
    """Random walks with overnight gaps, halts, IPOs, delistings and bars missing one price."""
    ret = rng.normal(0.0, 0.03, (n, t))
    c = 100.0 * np.exp(np.cumsum(ret, axis=1))
    prev = np.concatenate([np.full((n, 1), 100.0), c[:, :-1]], axis=1)
    o = prev * np.exp(rng.normal(0.0, 0.03, (n, t)))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.02, (n, t))))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.02, (n, t))))
    missing = rng.random((n, t)) < 0.08
    for r in range(n):
        kind = rng.integers(0, 4)
        if kind == 1:  # delisted
            missing[r, rng.integers(1, t):] = True
        elif kind == 2:  # listed late
            missing[r, : rng.integers(1, t)] = True
    o, h, lo, c = (np.where(missing, NAN, a) for a in (o, h, lo, c))
    partial = rng.random((n, t)) < 0.02  # a bar with only its open missing is no bar
    o = np.where(partial, NAN, o)
    return o, h, lo, c


def random_signals(rng: np.random.Generator, close: np.ndarray, m: int) -> dict[str, Any]:
    n, t = close.shape
    lst = rng.integers(0, n, m)
    ses = rng.integers(0, t, m)
    base = np.nan_to_num(close[lst, ses], nan=100.0)
    stop = base * (1 - rng.uniform(0.005, 0.1, m))
    target = base * (1 + rng.uniform(0.005, 0.15, m))
    bad = rng.random(m)
    stop = np.where(bad < 0.03, NAN, stop)
    target = np.where((bad >= 0.03) & (bad < 0.05), stop * 0.99, target)
    rank = np.where(rng.random(m) < 0.2, NAN, rng.integers(1, 4, m).astype(float))
    return {"listing": lst, "session": ses, "stop": stop, "target": target, "rank": rank}


def inferred_last_session(close: np.ndarray) -> np.ndarray:
    t = close.shape[1]
    out = np.full(close.shape[0], -1, np.int64)
    for r in range(close.shape[0]):
        idx = np.nonzero(np.isfinite(close[r]))[0]
        if len(idx) and idx[-1] < t - 1:
            out[r] = idx[-1]
    return out


def ref_trade(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, row: int, d: int,
              stop: float, target: float, last_session: int, max_hold: int,
              entry_window: int) -> tuple[str, int, float, int, float, int]:
    """The rules of the module docstring, one bar at a time in plain Python."""
    t = o.shape[1]
    if not (math.isfinite(stop) and math.isfinite(target) and stop < target):
        return "invalid", -1, NAN, -1, NAN, 0

    def bar(s: int) -> bool:
        return all(math.isfinite(a[row, s]) for a in (o, h, lo, c))

    delisted = 0 <= last_session < t
    last = last_session if delisted else t - 1
    entries = [s for s in range(d + 1, d + entry_window + 1) if s <= last and bar(s)]
    if not entries:
        return "no_entry", -1, NAN, -1, NAN, 0
    e = entries[0]
    ep = float(o[row, e])
    if ep <= stop:
        return "gap_stop", e, ep, e, ep, 0
    if ep >= target:
        return "gap_target", e, ep, e, ep, 0
    held = [s for s in range(e, last + 1) if bar(s)]
    for k, s in enumerate(held, start=1):
        if s > e and o[row, s] <= stop:
            return "gap_stop", e, ep, s, float(o[row, s]), k
        if s > e and o[row, s] >= target:
            return "gap_target", e, ep, s, float(o[row, s]), k
        if lo[row, s] <= stop:
            return "stop", e, ep, s, stop, k
        if h[row, s] >= target:
            return "target", e, ep, s, target, k
        if k == max_hold:
            return "time", e, ep, s, float(c[row, s]), k
    return ("delisted" if delisted else "open"), e, ep, held[-1], float(c[row, held[-1]]), \
        len(held)


def ref_portfolio(trades: pd.DataFrame, close: np.ndarray, e0: float, f: float, cap: int,
                  pos_frac: float | None, start: int) -> tuple[np.ndarray, dict[int, str],
                                                               dict[int, float]]:
    """The portfolio rules in plain Python over dicts; returns (equity per session from start,
    status by trade row, shares by trade row)."""
    t = close.shape[1]
    entered = [i for i in range(len(trades))
               if trades.entry_session[i] >= 0 and trades.reason[i] in (*CLOSED_REASONS, "open")]
    entered.sort(key=lambda i: (trades.entry_session[i],
                                math.inf if math.isnan(trades["rank"][i]) else trades["rank"][i],
                                trades.listing[i]))
    status: dict[int, str] = {}
    shares: dict[int, float] = {}
    open_pos: dict[int, float] = {}  # trade row -> last mark
    cash, prev_equity = e0, e0
    curve = []
    for s in range(t):
        for i in entered:
            if trades.entry_session[i] != s:
                continue
            if s < start:
                status[i] = "before_start"
                continue
            ep, sp = trades.entry_price[i], trades.stop[i]
            if not ep - sp > 0:
                status[i] = "no_risk"
            elif any(trades.listing[j] == trades.listing[i] for j in open_pos):
                status[i] = "held"
            elif len(open_pos) >= cap:
                status[i] = "full"
            else:
                sh = f * prev_equity / (ep - sp)
                if pos_frac is not None:
                    sh = min(sh, pos_frac * prev_equity / ep)
                sh = min(sh, cash / ep)
                if sh * ep > 1e-9 * prev_equity:  # rounding residue is no cash
                    status[i], shares[i] = "taken", sh
                    cash -= sh * ep
                    open_pos[i] = ep
                else:
                    status[i] = "no_cash"
        if s < start:
            continue
        for i in list(open_pos):
            if trades.reason[i] != "open" and trades.exit_session[i] == s:
                cash += shares[i] * trades.exit_price[i]
                del open_pos[i]
            elif math.isfinite(close[trades.listing[i], s]):
                open_pos[i] = close[trades.listing[i], s]
        prev_equity = cash + sum(shares[i] * px for i, px in open_pos.items())
        curve.append(prev_equity)
    return np.array(curve), status, shares


# ---------------------------------------------------------------------------------------
# Each exit rule on hand-built bars (stop 95, target 110, entry at the open of session 1)
# ---------------------------------------------------------------------------------------


def test_stop_hit_exits_at_the_stop_one_r_lost() -> None:
    tr = one(bars(FLAT, FLAT, (99.0, 100.0, 94.0, 96.0), FLAT))
    assert (tr.reason, tr.entry_session, tr.entry_price) == ("stop", 1, 100.0)
    assert (tr.exit_session, tr.exit_price, tr.bars_held, tr.r_multiple) == (2, 95.0, 2, -1.0)


def test_target_hit_exits_at_the_target() -> None:
    tr = one(bars(FLAT, FLAT, (101.0, 111.0, 100.0, 108.0), FLAT))
    assert (tr.reason, tr.exit_session, tr.exit_price, tr.r_multiple) == ("target", 2, 110.0, 2.0)
    assert tr["return"] == pytest.approx(0.10)


def test_gap_through_the_stop_fills_at_the_open() -> None:
    tr = one(bars(FLAT, FLAT, (93.0, 94.0, 90.0, 92.0)))
    assert (tr.reason, tr.exit_price, tr.exit_session) == ("gap_stop", 93.0, 2)
    assert tr.r_multiple == pytest.approx(-1.4)  # worse than -1 R: the gap's real cost


def test_gap_through_the_target_fills_at_the_open() -> None:
    tr = one(bars(FLAT, FLAT, (112.0, 113.0, 111.0, 112.5)))
    assert (tr.reason, tr.exit_price) == ("gap_target", 112.0)
    assert tr.r_multiple == pytest.approx(2.4)


def test_both_levels_in_one_bar_count_as_the_stop() -> None:
    tr = one(bars(FLAT, FLAT, (100.0, 111.0, 94.0, 105.0)))
    assert (tr.reason, tr.exit_price, tr.exit_session) == ("stop", 95.0, 2)


def test_the_entry_bar_can_hit_a_level_after_its_open() -> None:
    tr = one(bars(FLAT, (100.0, 100.5, 94.0, 96.0), FLAT))
    assert (tr.reason, tr.entry_session, tr.exit_session, tr.bars_held) == ("stop", 1, 1, 1)


def test_time_exit_at_the_close_of_the_last_held_bar() -> None:
    panel = bars(FLAT, FLAT, FLAT, (100.0, 101.0, 99.0, 100.7), FLAT, FLAT)
    tr = one(panel, max_hold=3)
    assert (tr.reason, tr.exit_session, tr.exit_price, tr.bars_held) == ("time", 3, 100.7, 3)
    assert tr.r_multiple == pytest.approx(0.7 / 5)


def test_halted_sessions_do_not_count_towards_max_hold() -> None:
    tr = one(bars(FLAT, FLAT, None, FLAT, (100.0, 101.0, 99.0, 99.5), FLAT), max_hold=3)
    assert (tr.reason, tr.exit_session, tr.exit_price, tr.bars_held) == ("time", 4, 99.5, 3)


def test_delisted_while_held_exits_at_the_last_close() -> None:
    panel = bars(FLAT, FLAT, (100.0, 101.0, 97.0, 98.0), None, None, None)
    tr = one(panel)
    assert (tr.reason, tr.exit_session, tr.exit_price, tr.bars_held) == ("delisted", 2, 98.0, 2)


def test_delisting_from_reference_data_ends_the_trade_there() -> None:
    panel = bars(FLAT, FLAT, (100.0, 101.0, 97.0, 98.0), FLAT, FLAT)
    tr = one(panel, last_session=[2])
    assert (tr.reason, tr.exit_session, tr.exit_price) == ("delisted", 2, 98.0)


def test_data_ending_while_held_leaves_the_trade_open_and_out_of_the_summary() -> None:
    panel = bars(FLAT, FLAT, (100.0, 101.0, 99.0, 100.5))
    tr = simulate_trades(*panel, listing=[0, 0], session=[0, 1], stop=[95.0, 95.0],
                         target=[110.0, 110.0])
    assert list(tr.reason) == ["open", "open"]
    assert (tr.exit_session[0], tr.exit_price[0]) == (2, 100.5)
    summary = trade_summary(tr)
    assert summary["trades"] == 0 and summary["by_reason"]["open"] == 2


def test_entry_open_below_the_stop_exits_at_once_flat() -> None:
    tr = one(bars(FLAT, (94.0, 96.0, 93.0, 95.5), FLAT))
    assert (tr.reason, tr.entry_price, tr.exit_price, tr.exit_session) == ("gap_stop", 94.0,
                                                                          94.0, 1)
    assert (tr.bars_held, tr.r_multiple) == (0, 0.0)


def test_entry_open_above_the_target_exits_at_once_flat() -> None:
    tr = one(bars(FLAT, (111.0, 112.0, 105.0, 106.0), FLAT))
    assert (tr.reason, tr.exit_price, tr.bars_held, tr.r_multiple) == ("gap_target", 111.0, 0,
                                                                       0.0)


def test_entry_waits_for_the_next_bar_within_the_entry_window() -> None:
    panel = bars(FLAT, None, None, (101.0, 102.0, 100.0, 101.0), FLAT)
    tr = one(panel, entry_window=3)
    assert (tr.entry_session, tr.entry_price) == (3, 101.0)
    late = one(panel, entry_window=2)
    assert (late.reason, late.entry_session) == ("no_entry", -1)
    assert math.isnan(late.entry_price)


def test_a_bar_missing_one_price_is_no_bar() -> None:
    o, h, lo, c = bars(FLAT, FLAT, FLAT)
    o[0, 1] = NAN
    tr = one((o, h, lo, c))
    assert tr.entry_session == 2


def test_invalid_plans_are_never_entered() -> None:
    panel = bars(FLAT, FLAT, FLAT)
    tr = simulate_trades(*panel, listing=[0, 0, 0], session=[0, 0, 0],
                         stop=[NAN, 105.0, 95.0], target=[110.0, 100.0, NAN])
    assert list(tr.reason) == ["invalid"] * 3


def test_summary_of_known_trades() -> None:
    panel = bars(FLAT, FLAT, (100.0, 111.0, 99.0, 105.0), FLAT)
    tr = simulate_trades(*panel, listing=[0, 0, 0], session=[0, 0, 0],
                         stop=[95.0, 99.5, 90.0], target=[110.0, 120.0, 105.0])
    # target +2 R, stop -1 R, target +0.5 R
    assert list(tr.reason) == ["target", "stop", "target"]
    np.testing.assert_allclose(tr.r_multiple, [2.0, -1.0, 0.5])
    s = trade_summary(tr)
    assert s["trades"] == 3 and s["win_rate"] == pytest.approx(2 / 3)
    assert s["mean_r"] == pytest.approx(0.5) and s["expectancy_r"] == pytest.approx(0.5)
    assert s["profit_factor"] == pytest.approx(2.5)
    assert s["by_reason"]["target"] == 2 and s["by_reason"]["stop"] == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_hold": 0}, "max_hold"),
    ({"entry_window": 0}, "entry_window"),
    ({"listing": [5]}, "listing"),
    ({"session": [9]}, "session"),
    ({"stop": [1.0, 2.0]}, "stop"),
    ({"last_session": [1, 2]}, "last_session"),
])
def test_bad_inputs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"listing": [0], "session": [0], "stop": [95.0], "target": [110.0]}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=field):
        simulate_trades(*bars(FLAT, FLAT), **args)


# ---------------------------------------------------------------------------------------
# Kernel == brute force on random panels; no peeking
# ---------------------------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), max_hold=st.integers(1, 12),
       entry_window=st.integers(1, 4), explicit=st.booleans())
def test_kernel_equals_brute_force(seed: int, max_hold: int, entry_window: int,
                                   explicit: bool) -> None:
    rng = np.random.default_rng(seed)
    o, h, lo, c = random_panel(rng, 6, 40)
    sig = random_signals(rng, c, 60)
    last = inferred_last_session(c)
    if explicit:  # reference data may end a listing before its last bar
        last = np.where(rng.random(6) < 0.3, rng.integers(0, 40, 6), last)
    tr = simulate_trades(o, h, lo, c, **sig, max_hold=max_hold, entry_window=entry_window,
                         last_session=last if explicit else None)
    for i in range(len(tr)):
        reason, es, ep, xs, xp, held = ref_trade(o, h, lo, c, sig["listing"][i],
                                                 sig["session"][i], sig["stop"][i],
                                                 sig["target"][i], int(last[sig["listing"][i]]),
                                                 max_hold, entry_window)
        row = tr.iloc[i]
        assert (row.reason, row.entry_session, row.exit_session, row.bars_held) == \
            (reason, es, xs, held), i
        np.testing.assert_equal([row.entry_price, row.exit_price], [ep, xp])
        if reason in CLOSED_REASONS or reason == "open":
            want = 0.0 if xp == ep else (xp - ep) / (ep - sig["stop"][i])
            assert row.r_multiple == want


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(0, 39))
def test_truncating_after_a_session_changes_no_trade_closed_by_then(seed: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    panel = random_panel(rng, 6, 40)
    sig = random_signals(rng, panel[3], 80)
    last = inferred_last_session(panel[3])
    full = simulate_trades(*panel, **sig, max_hold=8, last_session=last)
    keep = sig["session"] <= cut
    short = simulate_trades(*(a[:, : cut + 1] for a in panel),
                            **{k: v[keep] for k, v in sig.items()}, max_hold=8,
                            last_session=np.where(last <= cut, last, -1))
    full = full[keep].reset_index(drop=True)
    closed_full = full.reason.isin(CLOSED_REASONS) & (full.exit_session <= cut)
    closed_short = short.reason.isin(CLOSED_REASONS)
    assert (closed_full == closed_short).all()
    pd.testing.assert_frame_equal(full[closed_full], short[closed_short])


# ---------------------------------------------------------------------------------------
# Portfolio
# ---------------------------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), cap=st.integers(1, 5),
       risk=st.sampled_from([0.005, 0.02, 0.2]), pos_frac=st.sampled_from([None, 0.15, 0.5]),
       start=st.integers(0, 10))
def test_portfolio_equals_brute_force(seed: int, cap: int, risk: float,
                                      pos_frac: float | None, start: int) -> None:
    rng = np.random.default_rng(seed)
    panel = random_panel(rng, 8, 50)
    sig = random_signals(rng, panel[3], 80)
    trades = simulate_trades(*panel, **sig, max_hold=10)
    res = simulate_portfolio(trades, panel[3], initial_equity=50_000.0, risk_fraction=risk,
                             max_positions=cap, max_position_fraction=pos_frac, start=start)
    curve, status, shares = ref_portfolio(trades, panel[3], 50_000.0, risk, cap, pos_frac,
                                          start)
    np.testing.assert_allclose(res.curve.equity.to_numpy(), curve, rtol=1e-12)
    got = res.trades
    for i in range(len(trades)):
        assert got.status[i] == status.get(i, "not_entered"), i
        assert got.shares[i] == pytest.approx(shares.get(i, 0.0), rel=1e-12)
    # The cap holds every session, counted from the taken trades themselves.
    taken = got[got.status == "taken"]
    for s in range(start, 50):
        entered, is_open = taken.entry_session <= s, taken.reason == "open"
        during = (entered & ((taken.exit_session >= s) | is_open)).sum()
        at_close = (entered & ((taken.exit_session > s) | is_open)).sum()
        assert during <= cap and at_close == res.curve.positions[s]
    # Equity = cash + every taken position marked at its last close.
    marked = np.zeros(50 - start)
    for _, tr in taken.iterrows():
        end = 50 if tr.reason == "open" else tr.exit_session
        px = tr.entry_price
        for s in range(tr.entry_session, end):
            if math.isfinite(panel[3][tr.listing, s]):
                px = panel[3][tr.listing, s]
            marked[s - start] += tr.shares * px
    np.testing.assert_allclose(res.curve.cash + marked, res.curve.equity, rtol=1e-12)
    np.testing.assert_allclose(res.curve.invested, marked, rtol=1e-12, atol=1e-9)


def test_every_trade_risks_the_same_share_of_equity() -> None:
    rng = np.random.default_rng(7)
    panel = random_panel(rng, 20, 120)
    sig = random_signals(rng, panel[3], 300)
    # Stops ~30 % away: no position needs more than a few % of equity, so no cap binds.
    sig["stop"], sig["target"] = sig["stop"] * 0.75, sig["target"] * 1.25
    trades = simulate_trades(*panel, **sig, max_hold=15)
    res = simulate_portfolio(trades, panel[3], risk_fraction=0.002, max_positions=4)
    assert (res.trades.status != "no_cash").all()
    taken = res.trades[res.trades.status == "taken"]
    assert len(taken) > 10
    prev = np.concatenate([[100_000.0], res.curve.equity.to_numpy()])
    risked = taken.shares * (taken.entry_price - taken.stop)
    np.testing.assert_allclose(risked, 0.002 * prev[taken.entry_session], rtol=1e-12)


def test_equity_curve_and_drawdown_by_hand() -> None:
    closes = [100.0, 100.0, 110.0, 95.0, 105.0, 120.0, 120.0]
    rows = [(c, c + 1, c - 1, c) for c in closes]
    rows[1] = (100.0, 101.0, 99.0, 100.0)
    panel = bars(*rows)
    trades = simulate_trades(*panel, listing=[0], session=[0], stop=[90.0], target=[500.0])
    # 10 % of 1,000 at risk over 10 a share: 10 shares, all the cash.
    res = simulate_portfolio(trades, panel[3], initial_equity=1000.0, risk_fraction=0.1,
                             max_positions=1, sessions=list("abcdefg"))
    np.testing.assert_allclose(res.curve.equity, [1000, 1000, 1100, 950, 1050, 1200, 1200])
    assert res.trades.shares[0] == 10.0 and res.trades.status[0] == "taken"
    assert res.stats["max_drawdown"] == pytest.approx(150 / 1100)
    assert (res.stats["drawdown_peak"], res.stats["drawdown_trough"],
            res.stats["drawdown_recovery"]) == ("c", "d", "f")
    assert res.stats["exposure"] == pytest.approx(6 / 7)
    assert res.stats["cagr"] == pytest.approx(1.2 ** (252 / 7) - 1)
    np.testing.assert_allclose(res.curve.drawdown, [0, 0, 0, 150 / 1100, 50 / 1100, 0, 0])


def test_slots_go_by_rank_then_listing_and_free_the_session_after_an_exit() -> None:
    n, t = 4, 6
    o = np.full((n, t), 100.0)
    h, lo, c = o + 1, o - 1, o.copy()
    lo[3, 2] = 90.0  # listing 3 stopped out in session 2
    tr = simulate_trades(o, h, lo, c, listing=[0, 1, 2, 3, 0, 2, 1], session=[0, 0, 0, 0, 1, 2, 1],
                         stop=[95.0] * 7, target=[110.0] * 7, rank=[2, NAN, 2, 1, 1, 1, 1],
                         max_hold=50)
    res = simulate_portfolio(tr, c, max_positions=2, risk_fraction=0.01)
    # Session 1: rank 1 (listing 3) then rank 2 by listing (0); 1 and 2 find no slot.
    # Session 2: listing 0 again (held), listing 1 has no slot (3 exits during session 2).
    # Session 3: listing 2's signal of session 2 takes the slot listing 3 freed.
    assert list(res.trades.status) == ["taken", "full", "full", "taken", "held", "taken", "full"]
    assert res.curve.positions.max() == 2


def test_truncating_changes_no_portfolio_session_up_to_the_cut() -> None:
    rng = np.random.default_rng(3)
    panel = random_panel(rng, 10, 80)
    sig = random_signals(rng, panel[3], 200)
    last = inferred_last_session(panel[3])
    full = simulate_portfolio(simulate_trades(*panel, **sig, last_session=last), panel[3],
                              max_positions=3, risk_fraction=0.02)
    for cut in (20, 45, 79):
        keep = sig["session"] <= cut
        part = [a[:, : cut + 1] for a in panel]
        tr = simulate_trades(*part, **{k: v[keep] for k, v in sig.items()},
                             last_session=np.where(last <= cut, last, -1))
        res = simulate_portfolio(tr, part[3], max_positions=3, risk_fraction=0.02)
        pd.testing.assert_frame_equal(res.curve, full.curve.iloc[: cut + 1])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"risk_fraction": 0.0}, "risk_fraction"),
    ({"max_positions": 0}, "max_positions"),
    ({"initial_equity": -1.0}, "initial_equity"),
    ({"max_position_fraction": 0.0}, "max_position_fraction"),
    ({"start": 9}, "start"),
    ({"sessions": ["a"]}, "sessions"),
])
def test_bad_portfolio_inputs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    panel = bars(FLAT, FLAT, FLAT)
    trades = simulate_trades(*panel, listing=[0], session=[0], stop=[95.0], target=[110.0])
    with pytest.raises(ConfigError, match=field):
        simulate_portfolio(trades, panel[3], **kwargs)


def test_portfolio_refuses_a_panel_other_than_the_trades_one() -> None:
    panel = bars(FLAT, FLAT, FLAT, FLAT)
    trades = simulate_trades(*panel, listing=[0], session=[0], stop=[95.0], target=[110.0],
                             max_hold=2)
    with pytest.raises(ConfigError, match="close"):
        simulate_portfolio(trades, panel[3][:, :2])


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 9))
def test_trades_by_chunks_of_listings_equal_the_whole_panel(seed: int, chunk: int) -> None:
    """Signals in any order, listings fetched ``chunk`` at a time: the same rows, in the
    signals' order."""
    from technic_v4.backtest.trades import simulate_trades_by_listings

    rng = np.random.default_rng(seed)
    panel = random_panel(rng, 7, 30)
    sig = random_signals(rng, panel[3], 50)
    last = np.where(rng.random(7) < 0.3, rng.integers(0, 30, 7), inferred_last_session(panel[3]))
    want = simulate_trades(*panel, **sig, max_hold=6, last_session=last)
    asked: list[np.ndarray] = []

    def bars_of(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        asked.append(rows)
        return tuple(a[rows] for a in panel)

    got = simulate_trades_by_listings(bars_of, 7, 30, **sig, max_hold=6, last_session=last,
                                      chunk=chunk)
    pd.testing.assert_frame_equal(got, want)
    assert all(len(r) <= chunk for r in asked)
    with pytest.raises(ConfigError, match="last_session"):
        simulate_trades_by_listings(bars_of, 7, 30, **sig, last_session=last[:3])


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), whole=st.booleans())
def test_entry_order_equals_lexsort(seed: int, whole: bool) -> None:
    """The portfolio's entry order (session, rank with none last, listing; stable) packed
    into one key equals lexsort, with whole or fractional ranks."""
    from technic_v4.backtest.trades import _entry_order

    rng = np.random.default_rng(seed)
    m = 200
    entry = np.sort(rng.integers(0, 30, m)) if seed % 2 else rng.integers(0, 30, m)
    rank = rng.integers(1, 6, m).astype(float) if whole else rng.random(m) * 5
    rank[rng.random(m) < 0.2] = np.inf
    listing = rng.integers(0, 5, m)
    np.testing.assert_array_equal(_entry_order(entry, rank, listing),
                                  np.lexsort((listing, rank, entry)))
