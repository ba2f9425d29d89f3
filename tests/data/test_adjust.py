"""The adjustment kernels against a brute-force application of the actions, bar by bar."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from technic_v4.data import adjust as adj
from technic_v4.data.adjust import Actions
from technic_v4.data.panel import FIELDS, assemble
from technic_v4.errors import ConfigError

DAY0 = int(np.datetime64("2026-01-05", "D").astype(np.int64))


def _brute(bars: dict[str, np.ndarray], acts: list[tuple[int, int, str, float]], basis: int,
           mode: str) -> dict[str, np.ndarray]:
    """Each bar on its own: the contract of data/adjust.py, read literally, over the listing's
    whole history (``bars``: one listing, days ascending; ``acts``: (sid, day, type, value))."""
    out = {f: bars[f].copy() for f in FIELDS}
    splits = [(d, v) for _, d, t, v in acts if t == "split"]
    divs = [(d, v) for _, d, t, v in acts if t == "dividend"]
    for i, t in enumerate(bars["day"]):
        f = 1.0
        for d, r in splits:
            if t < d <= basis:
                f *= r
        g = 1.0
        if mode == "total":
            for d, amount in divs:
                if not t < d <= basis:
                    continue
                prev = np.flatnonzero(bars["day"] < d)[-1]  # the last bar before the ex-date
                s = 1.0
                for ds, r in splits:
                    if bars["day"][prev] < ds <= d:
                        s *= r
                m = 1.0 - amount / (bars["close"][prev] / s)
                if m > 0:
                    g *= m
        for p in ("open", "high", "low", "close"):
            out[p][i] = bars[p][i] / f * g
        out["volume"][i] = bars["volume"][i] * f
    return out


@st.composite
def _market(draw: st.DrawFn) -> tuple[dict[int, dict[str, np.ndarray]],
                                      list[tuple[int, int, str, float]], int, int]:
    """A few listings with bars on random days, random splits and dividends, a basis and a
    panel width."""
    n_days = draw(st.integers(5, 40))
    listings: dict[int, dict[str, np.ndarray]] = {}
    acts: list[tuple[int, int, str, float]] = []
    for sid in range(draw(st.integers(1, 4))):
        days = np.array(sorted(draw(st.sets(st.integers(0, n_days - 1), min_size=1,
                                            max_size=n_days)))) + DAY0
        close = np.array(draw(st.lists(st.floats(1.0, 500.0), min_size=len(days),
                                       max_size=len(days))))
        listings[sid] = {"day": days, "open": close * 1.01, "high": close * 1.02,
                         "low": close * 0.98, "close": close,
                         "volume": np.array(draw(st.lists(st.floats(0.0, 1e7),
                                                          min_size=len(days),
                                                          max_size=len(days))))}
        for d in sorted(draw(st.sets(st.integers(1, n_days + 2), max_size=3))):
            acts.append((sid, DAY0 + d, "split",
                         draw(st.sampled_from([2.0, 3.0, 4.0, 1.5, 0.2, 0.1]))))
        for d in sorted(draw(st.sets(st.integers(1, n_days + 2), max_size=3))):
            acts.append((sid, DAY0 + d, "dividend", draw(st.floats(0.01, 3.0))))
    basis = DAY0 + draw(st.integers(0, n_days + 2))
    return listings, acts, basis, draw(st.integers(1, n_days))


def _actions(acts: list[tuple[int, int, str, float]]) -> Actions:
    return Actions.build([a[0] for a in acts], [a[1] for a in acts],
                         [adj.SPLIT if a[2] == "split" else adj.DIVIDEND for a in acts],
                         [a[3] for a in acts])


@pytest.mark.parametrize("mode", ["split", "total"])
@given(m=_market())
def test_adjusted_panel_equals_brute_force(mode: str, m: tuple) -> None:  # type: ignore[type-arg]
    listings, acts, basis, width = m
    as_of = dt.date(1970, 1, 1) + dt.timedelta(days=int(basis))
    long = {k: [] for k in ("sid", "day", *FIELDS)}  # type: ignore[var-annotated]
    for sid, b in listings.items():
        keep = b["day"] <= basis
        long["sid"].append(np.full(int(keep.sum()), sid, dtype=np.int32))
        for k in ("day", *FIELDS):
            long[k].append(b[k][keep])
    window = {k: np.concatenate(v) for k, v in long.items()}
    sids = np.array(sorted(listings), dtype=np.int32)
    days = np.unique(window["day"]).astype(np.int64)
    raw = assemble(np.array([f"X{s}" for s in sids], dtype=object), sids, width, as_of,
                   window, days)
    closes = raw.close.copy()
    p = raw.adjusted(_actions(acts), mode)
    for r, sid in enumerate(sids):
        b = listings[int(sid)]
        want = _brute(b, [a for a in acts if a[0] == sid], basis, mode)
        ok = p.day[r] >= 0
        pos = np.searchsorted(b["day"], p.day[r][ok])
        for f in FIELDS:
            got = getattr(p, f)[r][ok]
            exp = want[f][pos]
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=0, err_msg=f)
        # Where no action applies the value is the raw one, bit for bit.
        untouched = np.array([not any(t < a[1] <= basis for a in acts
                                      if a[0] == sid and (mode == "total" or a[2] == "split"))
                              for t in p.day[r][ok]], dtype=bool)
        np.testing.assert_array_equal(p.close[r][ok][untouched], closes[r][ok][untouched])
    # The panel as of any earlier day, cut from this one, equals building it as of that day.
    for cut in range(DAY0, int(basis) + 1, 3):
        if not (days <= cut).any():
            continue
        cut_day = dt.date(1970, 1, 1) + dt.timedelta(days=cut)
        inside = window["day"] <= cut
        fresh = assemble(raw.symbols, sids, width, cut_day,
                         {k: v[inside] for k, v in window.items()}, days[days <= cut]
                         ).adjusted(_actions(acts), mode)
        cut_view = assemble(raw.symbols, sids, 2 * width + 40, as_of, window, days
                            ).adjusted(_actions(acts), mode).at(cut_day, width)
        for f in (*FIELDS, "day"):
            np.testing.assert_array_equal(getattr(cut_view, f), getattr(fresh, f), err_msg=f)


def test_dividends_in_total_return() -> None:
    """A $1 dividend on a $50 close: total-return prices before it are 2% lower; a 2:1 split
    on the same ex-date halves the close it is measured against."""
    day = np.arange(4, dtype=np.int32) + DAY0
    close = np.array([[48.0, 50.0, 25.0, 26.0]])
    bars = {f: close.copy() for f in FIELDS}
    bars["volume"] = np.full((1, 4), 100.0)
    acts = Actions.build([0], [DAY0 + 2], [adj.DIVIDEND], [1.0])
    got = adj.adjust_rows(bars, day[None, :], np.array([0]), acts, DAY0 + 3)
    np.testing.assert_array_equal(got["close"], [[48 * (1 - 1 / 50), 50 * (1 - 1 / 50),
                                                   25.0, 26.0]])
    both = Actions.build([0, 0], [DAY0 + 2, DAY0 + 2], [adj.DIVIDEND, adj.SPLIT], [1.0, 2.0])
    got = adj.adjust_rows(bars, day[None, :], np.array([0]), both, DAY0 + 3)
    np.testing.assert_allclose(got["close"][0], [24 * (1 - 1 / 25), 25 * (1 - 1 / 25), 25, 26],
                               rtol=1e-15)
    np.testing.assert_array_equal(got["volume"][0], [200, 200, 100, 100])
    # As of the day before the ex-date, nothing applies.
    before = adj.adjust_rows(bars, day[None, :], np.array([0]), both, DAY0 + 1)
    np.testing.assert_array_equal(before["close"], close)


def test_nothing_to_adjust_copies_nothing() -> None:
    day = np.arange(5, dtype=np.int32) + DAY0
    window = {"sid": np.zeros(5, dtype=np.int32), "day": day,
              **{f: np.linspace(10, 11, 5) for f in FIELDS}}
    raw = assemble(np.array(["A"], dtype=object), np.array([0], dtype=np.int32), 5,
                   dt.date(2026, 1, 9), window, day.astype(np.int64))
    # Actions of another listing, and of this one before its first bar or after the basis.
    acts = Actions.build([1, 0, 0], [DAY0 + 2, DAY0, DAY0 + 9], [adj.SPLIT] * 3, [2.0] * 3)
    p = raw.adjusted(acts, "total")
    assert p.raw is None
    for f in FIELDS:
        assert getattr(p, f) is getattr(raw, f)


def test_unknown_mode_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"adjust: unknown adjustment 'splits'; valid: "
                                          r"split, total, none") as e:
        adj.check_mode("splits")
    assert e.value.field == "adjust"


def test_shares_as_of_divides_by_the_later_splits() -> None:
    acts = Actions.build([0, 0, 1, 2], [10, 20, 15, 30], [adj.SPLIT, adj.SPLIT, adj.DIVIDEND,
                                                         adj.SPLIT], [4.0, 0.1, 1.0, 2.0])
    np.testing.assert_array_equal(adj.split_product(np.array([2, 0, 1]), acts, 12, 25),
                                  [1.0, 0.1, 1.0])
    np.testing.assert_array_equal(adj.split_product(np.array([0]), acts, 5, 25), [0.1 * 4.0])


def test_of_sids_keeps_those_listings_actions_in_order() -> None:
    acts = Actions.build([3, 1, 1, 2, 3, 7], [5, 9, 4, 6, 2, 1],
                         [adj.SPLIT, adj.DIVIDEND, adj.SPLIT, adj.SPLIT, adj.DIVIDEND, adj.SPLIT],
                         [2.0, 0.5, 3.0, 4.0, 0.1, 5.0])
    sub = acts.of_sids(np.array([3, 1, 99]))
    keep = np.isin(acts.sid, [1, 3])
    for f in ("sid", "day", "kind", "value"):
        np.testing.assert_array_equal(getattr(sub, f), getattr(acts, f)[keep], err_msg=f)
    assert len(acts.of_sids(np.array([42]))) == 0
