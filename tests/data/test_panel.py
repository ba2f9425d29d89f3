"""panel.assemble against a brute-force per-symbol implementation, and the Panel helpers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_v4.data.panel import FIELDS, Panel, assemble

AS_OF = dt.date(2026, 11, 20)


def brute_force(sids: np.ndarray, n_bars: int, window: dict[str, np.ndarray],
                window_days: np.ndarray, extra: dict[str, np.ndarray] | None
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One symbol at a time: its bars (from ``extra`` if it has rows there, else from the window
    on window days), sorted by day, the last ``n_bars`` right-aligned."""
    n = len(sids)
    out = {f: np.full((n, n_bars), np.nan) for f in FIELDS}
    day = np.full((n, n_bars), -1, dtype=np.int32)
    in_extra = set() if extra is None else set(extra["sid"].tolist())
    wd = set(window_days.tolist())
    for i, s in enumerate(sids.tolist()):
        src = extra if s in in_extra else window
        assert src is not None
        rows = [j for j in range(len(src["sid"]))
                if src["sid"][j] == s and (src is extra or int(src["day"][j]) in wd)]
        rows.sort(key=lambda j: int(src["day"][j]))
        rows = rows[-n_bars:]
        k = len(rows)
        for pos, j in enumerate(rows):
            col = n_bars - k + pos
            day[i, col] = int(src["day"][j])
            for f in FIELDS:
                out[f][i, col] = src[f][j]
    return out, day


def long_arrays(pairs: list[tuple[int, int]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = len(pairs)
    rng_perm = rng.permutation(m)  # storage order is arbitrary
    sid = np.array([p[0] for p in pairs], dtype=np.int32)[rng_perm]
    day = np.array([p[1] for p in pairs], dtype=np.int64)[rng_perm]
    return {"sid": sid, "day": day, **{f: rng.uniform(1, 100, m) for f in FIELDS}}


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    n_sym = draw(st.integers(0, 6))
    sids = np.array(draw(st.lists(st.integers(0, 50), min_size=n_sym, max_size=n_sym,
                                  unique=True)), dtype=np.int32)
    # Session days: increasing with gaps (weekends, holidays).
    steps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=25))
    all_days = 20000 + np.cumsum(steps)
    w_from = draw(st.integers(0, len(all_days) - 1))
    window_days = all_days[w_from:].astype(np.int64)
    # Each symbol trades on a random subset of the window days (gaps, late listings, halts);
    # some rows refer to a symbol not in the panel (99) and to days that are not window days
    # (before the window, between two window days, after it): assemble ignores those.
    off_days = [*all_days[:w_from].tolist(), int(all_days[-1]) + 1, int(all_days[-1]) + 5,
                *[int(d) + 1 for d in window_days if int(d) + 1 not in set(all_days.tolist())]]
    pairs = []
    for s in [*sids.tolist(), 99]:
        pairs += [(s, int(d)) for d in window_days if draw(st.booleans())]
        pairs += [(s, int(d)) for d in off_days if draw(st.integers(0, 3)) == 0]
    n_bars = draw(st.integers(1, len(window_days) + 3))
    extra = None
    if n_sym and draw(st.booleans()):
        who = draw(st.lists(st.sampled_from(sids.tolist()), unique=True, max_size=n_sym))
        epairs = []
        for s in who:
            ds = draw(st.lists(st.sampled_from(all_days.tolist()), unique=True, min_size=1,
                               max_size=n_bars + 3))
            epairs += [(s, int(d)) for d in ds]
        extra = long_arrays(epairs, draw(st.integers(0, 1000)))
    window = long_arrays(pairs, draw(st.integers(0, 1000)))
    return sids, n_bars, window, window_days, extra


@settings(max_examples=300, deadline=None)
@given(cases())
def test_assemble_matches_brute_force(case: tuple) -> None:
    sids, n_bars, window, window_days, extra = case
    symbols = np.array([f"T{s}" for s in sids], dtype=object)
    p = assemble(symbols, sids, n_bars, AS_OF, window, window_days, extra)
    want, want_day = brute_force(sids, n_bars, window, window_days, extra)
    assert p.day.shape == (len(sids), n_bars)
    assert p.day.dtype == np.int32
    np.testing.assert_array_equal(p.day, want_day)
    for f in FIELDS:
        assert getattr(p, f).shape == (len(sids), n_bars)
        assert getattr(p, f).dtype == np.float64
        np.testing.assert_array_equal(getattr(p, f), want[f], err_msg=f)
    # Structure: right-aligned, padding on the left, dates strictly increasing.
    pad = p.day < 0
    np.testing.assert_array_equal(pad, np.isnan(p.close))
    for i in range(len(sids)):
        k = int((~pad[i]).sum())
        assert not pad[i, n_bars - k:].any()
        assert (np.diff(p.day[i, n_bars - k:]) > 0).all()
    np.testing.assert_array_equal(p.symbols, symbols)
    np.testing.assert_array_equal(p.sids, sids)
    assert p.as_of == AS_OF


def test_assemble_small_example() -> None:
    """A hand-checked case: gap, short history, and an extra row that replaces the window."""
    window_days = np.array([10, 11, 12, 15, 16], dtype=np.int64)
    window = {"sid": np.array([1, 1, 1, 2, 2, 3, 3, 1], dtype=np.int32),
              "day": np.array([16, 10, 12, 16, 15, 10, 16, 13], dtype=np.int64),
              **{f: np.array([5.0, 1.0, 3.0, 20.0, 19.0, 30.0, 31.0, 99.0]) for f in FIELDS}}
    extra = {"sid": np.array([3, 3, 3, 3], dtype=np.int32),
             "day": np.array([16, 2, 5, 9], dtype=np.int64),
             **{f: np.array([31.0, 28.0, 29.0, 30.0]) for f in FIELDS}}
    p = assemble(np.array(["A", "B", "C", "D"], dtype=object), np.array([1, 2, 3, 4]), 3,
                 AS_OF, window, window_days, extra)
    # Day 13 is not a window day: ignored. Symbol 4 has no bars at all.
    np.testing.assert_array_equal(p.day, [[10, 12, 16], [-1, 15, 16], [5, 9, 16], [-1, -1, -1]])
    np.testing.assert_array_equal(p.close, [[1.0, 3.0, 5.0], [np.nan, 19.0, 20.0],
                                            [29.0, 30.0, 31.0], [np.nan] * 3])
    np.testing.assert_array_equal(p.n_bars, [3, 2, 3, 0])
    np.testing.assert_array_equal(p.last_day, [16, 16, 16, -1])


def _panel() -> Panel:
    day = np.array([[-1, 20000, 20001, 20004], [19990, 19991, 20001, 20004]], dtype=np.int32)
    close = np.where(day >= 0, day.astype(np.float64) / 100.0, np.nan)
    return Panel(np.array(["A", "B"], dtype=object), np.array([7, 9], dtype=np.int32),
                 close + 1, close + 2, close - 1, close, close * 10, day, AS_OF)


def test_panel_tail_rows_frame() -> None:
    p = _panel()
    t = p.tail(2)
    np.testing.assert_array_equal(t.day, p.day[:, -2:])
    np.testing.assert_array_equal(t.close, p.close[:, -2:])
    assert t.close.flags["C_CONTIGUOUS"]
    assert p.tail(4) is p
    assert p.tail(10) is p
    r = p.rows(np.array([1]))
    assert r.symbols.tolist() == ["B"]
    np.testing.assert_array_equal(r.day, p.day[1:])
    f = p.frame(0)
    assert list(f.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert f.index.tolist() == [pd.Timestamp("2024-10-04"), pd.Timestamp("2024-10-05"),
                                pd.Timestamp("2024-10-08")]
    assert f["Close"].tolist() == [200.0, 200.01, 200.04]
    assert f.index.name == "Date"
    np.testing.assert_array_equal(p.n_bars, [3, 4])
    assert p.nbytes == 5 * 8 * 8 + 8 * 4 + p.symbols.nbytes
