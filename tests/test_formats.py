from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from technic_v4 import formats


def _digits(text: str) -> int:
    return len(text.lstrip("-").split("e")[0].replace(".", "").strip("0"))


def test_noise_is_rounded_away() -> None:
    x = np.array([71.36899999999994, 604.2429999999997, 3403676430.0000005, -0.939160711013376,
                  0.0, np.nan, np.inf, 1e-300])
    r = formats.significant(x)
    assert [repr(v) for v in r[:4].tolist()] == ["71.369", "604.243", "3403676430.0", "-0.939160711"]
    assert r[4] == 0.0 and np.isnan(r[5]) and r[6] == np.inf and r[7] == 1e-300


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: 1e-200 < abs(v) < 1e200))
def test_significant_is_short_and_close(x: float) -> None:
    r = float(formats.significant(np.array([x]))[0])
    assert _digits(repr(r)) <= formats.DIGITS
    unit = 10.0 ** (math.floor(math.log10(abs(x))) - formats.DIGITS + 1)
    assert abs(r - x) <= 0.5 * unit * (1 + 1e-6)


def test_csv_and_json_agree_and_keep_nulls() -> None:
    df = pd.DataFrame({"Symbol": ["A", "B"], "Close": [71.36899999999994, np.nan],
                       "Rank": [1, 2], "LastDate": pd.to_datetime(["2026-11-20", None])})
    csv = formats.to_csv(df)
    assert csv.splitlines()[1:] == ['"A",71.369,1,2026-11-20', '"B",,2,']
    rows = json.loads(formats.to_json(df))
    assert rows == [{"Symbol": "A", "Close": 71.369, "Rank": 1, "LastDate": "2026-11-20"},
                    {"Symbol": "B", "Close": None, "Rank": 2, "LastDate": None}]
    assert pd.read_csv(io.StringIO(csv))["Close"].iloc[0] == 71.369
    assert formats.to_json(df.iloc[:0]) == "[]"
