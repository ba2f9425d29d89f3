"""Text output of a result frame: CSV (and the rounding JSON shares).

Floats are rounded to ``DIGITS`` significant digits, then written in their shortest form:
enough for every price, ratio and dollar amount technic computes, few enough to drop binary
noise (``71.36899999999994`` -> ``71.369``). Parquet keeps the exact float64 values.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

DIGITS = 10


def significant(x: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """``x`` rounded to ``digits`` significant digits (NaN and inf kept).

    Each result is an integer times or divided by an exact power of ten, so it is the double
    nearest to the rounded decimal and its shortest repr is that decimal.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        places = digits - 1 - np.floor(np.log10(np.abs(x)))
    places = np.where(np.isfinite(places), places, 0)
    up = 10.0 ** np.clip(places, 0, 300)
    down = 10.0 ** np.clip(-places, 0, 300)
    return np.where(places >= 0, np.round(x * up) / up, np.round(x / down) * down)


def rounded(df: pd.DataFrame, digits: int = DIGITS) -> pd.DataFrame:
    """A copy of ``df`` with its float columns rounded to ``digits`` significant digits."""
    out = df.copy()
    for c in df.columns[[t.kind == "f" for t in df.dtypes]]:
        out[c] = significant(df[c].to_numpy(), digits)
    return out


def to_csv(df: pd.DataFrame, digits: int = DIGITS) -> str:
    """CSV through Arrow (5x faster than pandas on the full table): floats rounded, dates as
    YYYY-MM-DD, empty cells for NaN, quotes only where needed."""
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
