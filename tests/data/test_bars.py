"""bars.validate: every bad row dropped and counted once, under its first reason; the rest kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from technic_v4.data.bars import DROP_REASONS, FIELDS, BarBatch, ValidationReport, validate

PRICES = ("open", "high", "low", "close")


def good_batch(n: int = 8) -> BarBatch:
    """``n`` valid rows: distinct symbols on one session, open/close strictly inside [low, high]."""
    i = np.arange(n, dtype=np.float64)
    return BarBatch(
        np.array([f"S{k}" for k in range(n)], dtype=object),
        np.full(n, np.datetime64("2025-06-10", "D")),
        10.0 + i, 12.0 + i, 9.0 + i, 11.0 + i, 1000.0 + 100.0 * i,
    )


def assert_same(a: BarBatch, b: BarBatch) -> None:
    assert len(a) == len(b)
    for f in ("symbol", "date", *FIELDS):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def assert_report(rep: ValidationReport, rows_in: int, **dropped: int) -> None:
    want = dict.fromkeys(DROP_REASONS, 0) | dropped
    assert rep.dropped == want
    assert rep.rows_in == rows_in
    assert rep.rows_kept == rows_in - sum(want.values())
    assert rep.rows_in == rep.rows_kept + rep.rows_dropped


# One bad value in one field of row 3 (open 13, high 15, low 12, close 14) -> its reason.
CASES = [
    *[(f, v, "non_finite") for f in FIELDS for v in (np.nan, np.inf, -np.inf)],
    *[(f, v, "non_positive_price") for f in PRICES for v in (0.0, -0.01, -12.0)],
    ("volume", -1.0, "negative_volume"),
    ("high", 8.5, "inconsistent_range"),  # high below low (and below open/close)
    ("low", 16.0, "inconsistent_range"),  # low above high
    ("low", 13.5, "inconsistent_range"),  # low above open only
    ("open", 15.01, "inconsistent_range"),  # open above high
    ("open", 8.0, "inconsistent_range"),  # open below low
    ("close", 15.5, "inconsistent_range"),  # close above high
    ("close", 11.99, "inconsistent_range"),  # close just below low (low of row 3 is 12)
]


@pytest.mark.parametrize(("field", "value", "reason"), CASES,
                         ids=[f"{f}={v}->{r}" for f, v, r in CASES])
def test_single_bad_value(field: str, value: float, reason: str) -> None:
    b = good_batch()
    getattr(b, field)[3] = value
    kept, rep = validate(b)
    assert_report(rep, 8, **{reason: 1})
    assert_same(kept, good_batch().take(np.array([0, 1, 2, 4, 5, 6, 7])))
    assert rep.zero_volume_rows == 0


def test_boundary_values_are_valid() -> None:
    """open/close equal to high or low, and a flat bar, are consistent."""
    b = good_batch(4)
    b.open[0], b.close[0] = b.high[0], b.low[0]
    b.open[1], b.close[1] = b.low[1], b.high[1]
    b.open[2] = b.high[2] = b.low[2] = b.close[2] = 5.0
    b.open[3] = b.high[3] = b.low[3] = b.close[3] = 1e-4  # tiny but positive
    kept, rep = validate(b)
    assert_report(rep, 4)
    assert_same(kept, b)


def test_zero_volume_is_kept_and_counted() -> None:
    b = good_batch()
    b.volume[[1, 6]] = 0.0
    b.close[4] = np.nan  # dropped rows do not count as zero-volume rows
    b.volume[4] = 0.0
    kept, rep = validate(b)
    assert_report(rep, 8, non_finite=1)
    assert rep.zero_volume_rows == 2
    assert kept.symbol.tolist() == ["S0", "S1", "S2", "S3", "S5", "S6", "S7"]
    assert kept.volume[1] == 0.0
    assert kept.volume[5] == 0.0


def test_each_row_counted_once_under_its_first_reason() -> None:
    b = good_batch(10)
    b.close[0] = np.nan
    b.volume[0] = -5.0  # also negative volume: still non_finite only
    b.open[1] = -3.0  # negative open is also below low: non_positive_price only
    b.high[2] = 0.0  # zero high is also below low: non_positive_price only
    b.volume[3] = -1.0
    b.high[3] = b.low[3] - 1.0  # also inconsistent: negative_volume first
    b.open[4] = b.high[4] + 1.0
    b.close[4] = b.low[4] - 1.0  # two range faults: one row
    b.volume[5] = np.inf
    b.low[5] = -1.0
    kept, rep = validate(b)
    assert_report(rep, 10, non_finite=2, non_positive_price=2, negative_volume=1,
                  inconsistent_range=1)
    assert kept.symbol.tolist() == ["S6", "S7", "S8", "S9"]
    assert rep.as_dict() == {"rows_in": 10, "rows_kept": 4, "rows_dropped": 6,
                             "dropped": rep.dropped, "zero_volume_rows": 0}


def test_duplicates_last_one_wins() -> None:
    d1, d2 = np.datetime64("2025-06-10", "D"), np.datetime64("2025-06-11", "D")
    sym = np.array(["A", "B", "A", "A", "B", "C", "B"], dtype=object)
    date = np.array([d1, d1, d2, d1, d1, d1, d2])
    close = np.array([10.0, 20.0, 30.0, 11.0, 21.0, 40.0, 22.0])
    b = BarBatch(sym, date, close.copy(), close + 1.0, close - 1.0, close.copy(),
                 np.arange(7, dtype=np.float64) + 1.0)
    kept, rep = validate(b)
    # (A, d1) rows 0 and 3 -> row 3; (B, d1) rows 1 and 4 -> row 4; the others are unique.
    assert_report(rep, 7, duplicate=2)
    assert_same(kept, b.take(np.array([2, 3, 4, 5, 6])))
    assert kept.close.tolist() == [30.0, 11.0, 21.0, 40.0, 22.0]
    assert kept.volume.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_triplicate_keeps_the_last_and_counts_two() -> None:
    d = np.datetime64("2025-06-10", "D")
    b = BarBatch(np.array(["A", "A", "A"], dtype=object), np.array([d, d, d]),
                 np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]),
                 np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0, 7.0]))
    kept, rep = validate(b)
    assert_report(rep, 3, duplicate=2)
    assert kept.close.tolist() == [3.0]
    assert kept.volume.tolist() == [7.0]


def test_invalid_last_copy_does_not_shadow_a_valid_first_copy() -> None:
    """A duplicate whose last copy is invalid: the invalid copy is dropped for its own reason and
    the valid copy is kept (not also counted as a duplicate)."""
    d = np.datetime64("2025-06-10", "D")
    b = BarBatch(np.array(["A", "B", "A"], dtype=object), np.array([d, d, d]),
                 np.array([10.0, 20.0, 10.5]), np.array([11.0, 21.0, 11.5]),
                 np.array([9.0, 19.0, 9.5]), np.array([10.0, 20.0, np.nan]),
                 np.array([1.0, 2.0, 3.0]))
    kept, rep = validate(b)
    assert_report(rep, 3, non_finite=1)
    assert_same(kept, b.take(np.array([0, 1])))


def test_same_symbol_other_day_and_same_day_other_symbol_are_not_duplicates() -> None:
    d1, d2 = np.datetime64("2025-06-10", "D"), np.datetime64("2025-06-11", "D")
    b = BarBatch(np.array(["A", "A", "B", "AB"], dtype=object), np.array([d1, d2, d1, d1]),
                 *(np.full(4, 5.0) for _ in range(4)), np.full(4, 1.0))
    kept, rep = validate(b)
    assert_report(rep, 4)
    assert_same(kept, b)


def test_empty_batch() -> None:
    kept, rep = validate(BarBatch.empty())
    assert len(kept) == 0
    assert_report(rep, 0)
    assert rep.zero_volume_rows == 0


def test_all_rows_invalid() -> None:
    b = good_batch(3)
    b.close[:] = np.nan
    kept, rep = validate(b)
    assert len(kept) == 0
    assert_report(rep, 3, non_finite=3)


def test_validate_does_not_modify_its_input() -> None:
    b = good_batch()
    b.close[2] = np.nan
    b.volume[5] = -1.0
    snapshot = b.take(np.arange(len(b)))
    validate(b)
    assert_same(b, snapshot)


def test_pre_1970_dates_are_not_confused_across_symbols() -> None:
    d = np.datetime64("1965-01-04", "D")
    b = BarBatch(np.array(["A", "B"], dtype=object), np.array([d, d]),
                 *(np.full(2, 5.0) for _ in range(4)), np.full(2, 1.0))
    kept, rep = validate(b)
    assert_report(rep, 2)
    assert kept.symbol.tolist() == ["A", "B"]


def test_report_merge() -> None:
    a = good_batch()
    a.close[0] = np.nan
    a.volume[1] = 0.0
    b = good_batch()
    b.open[2] = -1.0
    _, ra = validate(a)
    _, rb = validate(b)
    ra.merge(rb)
    assert ra.rows_in == 16
    assert ra.rows_kept == 14
    assert ra.dropped == dict.fromkeys(DROP_REASONS, 0) | {"non_finite": 1,
                                                           "non_positive_price": 1}
    assert ra.zero_volume_rows == 1


def test_frame_roundtrip() -> None:
    b = good_batch()
    back = BarBatch.from_frame(b.to_frame())
    assert_same(back, b)
    assert back.date.dtype == np.dtype("datetime64[D]")


# -- property test against a row-by-row reference implementation -------------------------------


def reference_validate(rows: list[tuple]) -> tuple[list[int], dict[str, int]]:
    """Indices kept (in input order) and the drop counts, one row at a time."""
    dropped = dict.fromkeys(DROP_REASONS, 0)
    alive = []
    for i, (_, _, o, h, lo, c, v) in enumerate(rows):
        vals = (o, h, lo, c, v)
        if not all(np.isfinite(x) for x in vals):
            dropped["non_finite"] += 1
        elif min(o, h, lo, c) <= 0:
            dropped["non_positive_price"] += 1
        elif v < 0:
            dropped["negative_volume"] += 1
        elif h < lo or not (lo <= o <= h) or not (lo <= c <= h):
            dropped["inconsistent_range"] += 1
        else:
            alive.append(i)
    last: dict[tuple, int] = {}
    for i in alive:
        last[(rows[i][0], rows[i][1])] = i
    kept = [i for i in alive if last[(rows[i][0], rows[i][1])] == i]
    dropped["duplicate"] = len(alive) - len(kept)
    return kept, dropped


VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -2.0, 0.0, 0.5, 1.0, 2.0, 3.0, 10.0])
ROW = st.tuples(st.sampled_from(["A", "B", "BRK.B", "C"]), st.integers(20000, 20004),
                VALUES, VALUES, VALUES, VALUES, VALUES)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=30))
def test_validate_matches_row_by_row_reference(rows: list[tuple]) -> None:
    df = pd.DataFrame(rows, columns=["symbol", "day", *FIELDS])
    b = BarBatch(df["symbol"].to_numpy(object), df["day"].to_numpy(np.int64).astype("datetime64[D]"),
                 *(df[f].to_numpy(np.float64) for f in FIELDS))
    kept, rep = validate(b)
    want_idx, want_dropped = reference_validate(rows)
    assert rep.dropped == want_dropped
    assert rep.rows_in == len(rows) == rep.rows_kept + rep.rows_dropped
    assert rep.rows_kept == len(want_idx)
    assert_same(kept, b.take(np.asarray(want_idx, dtype=np.int64)))
    assert rep.zero_volume_rows == sum(rows[i][6] == 0.0 for i in want_idx)
