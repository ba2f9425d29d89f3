"""Text output of a result frame: CSV and JSON.

Floats are rounded to ``DIGITS`` significant digits, then written in their shortest form:
enough for every price, ratio and dollar amount technic computes, few enough to drop binary
noise (``71.36899999999994`` -> ``71.369``). Parquet keeps the exact float64 values.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

DIGITS = 10


def significant(x: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """``x`` rounded to ``digits`` significant digits (NaN and inf kept).

    Where the scale is an exact power of ten (10**0 .. 10**22) each result is an integer times or
    divided by it, so it is the double nearest to the rounded decimal and prints as that
    decimal; the rare values beyond (below ~1e-13 or above ~1e31) go through Python's
    correctly rounded formatting.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        places = digits - 1 - np.floor(np.log10(np.abs(x)))
    places = np.where(np.isfinite(places), places, 0)
    exact = np.abs(places) <= 22
    p = np.where(exact, places, 0)
    up, down = 10.0 ** np.maximum(p, 0), 10.0 ** np.maximum(-p, 0)
    out = np.where(p >= 0, np.round(x * up) / up, np.round(x / down) * down)
    for i in np.flatnonzero(~exact):
        out[i] = float(f"{x[i]:.{digits}g}")
    return out


def rounded(df: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """A copy of ``df`` with its float columns rounded to ``digits`` significant digits."""
    out = df.copy()
    for c in df.columns[[t.kind == "f" for t in df.dtypes]]:
        out[c] = significant(df[c].to_numpy(), digits)
    return out


def to_csv(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """CSV through Arrow (5x faster than pandas on the full table): floats rounded, dates as
    YYYY-MM-DD, empty cells for NaN, text cells quoted (Arrow's "needed" style)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    tbl = pa.Table.from_pandas(rounded(df, digits), preserve_index=False)
    for i, field in enumerate(tbl.schema):
        if pa.types.is_timestamp(field.type):
            tbl = tbl.set_column(i, field.name, pc.cast(tbl.column(i), pa.date32()))
    buf = io.BytesIO()
    pcsv.write_csv(tbl, buf, pcsv.WriteOptions(quoting_style="needed"))
    return buf.getvalue().decode()


def to_json(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """A JSON array of row objects, one row per line: floats rounded (NaN/inf -> null), dates
    as YYYY-MM-DD. Built column by column and encoded by the C encoder, row by row."""
    cols: list[list[Any]] = []
    for c in df.columns:
        s = df[c]
        if s.dtype.kind == "M":
            cols.append([None if pd.isna(d) else str(d) for d in s.to_numpy("datetime64[D]")])
        elif s.dtype.kind == "f":
            a = significant(s.to_numpy(), digits)
            vals: list[Any] = a.tolist()
            for i in np.flatnonzero(~np.isfinite(a)):
                vals[i] = None
            cols.append(vals)
        else:
            cols.append([None if v is None or v is pd.NA or v != v else v
                         for v in s.to_numpy(object).tolist()])
    names = [str(c) for c in df.columns]
    rows = (json.dumps(dict(zip(names, r, strict=True)), ensure_ascii=False, default=str)
            for r in zip(*cols, strict=True))
    return "[\n" + ",\n".join(rows) + "\n]" if len(df) else "[]"
