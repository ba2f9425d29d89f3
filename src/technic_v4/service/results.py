"""A finished scan as the service holds it: the frame, its message and stats, and their encodings.

JSON follows the Python API exactly: every column of ``pipeline.COLUMNS`` in order, floats as
Python's shortest round-trip repr (so a client parses the very same float64), NaN/inf -> null,
dates as ``YYYY-MM-DD``. CSV is ``formats.to_csv`` (floats to 10 significant digits), byte for
byte what ``technic scan --format csv`` writes. Between instances a result travels as Arrow IPC (never
pickle): the frame as a record batch, message and stats as JSON in the schema metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from technic_v4 import formats

_META_KEY = b"technic.result"
FORMAT_VERSION = 1


def jsonable(obj: Any) -> Any:
    """``obj`` with only JSON types: NaN/inf -> None, numpy scalars -> Python, dates -> ISO."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def dumps(obj: Any) -> bytes:
    """Compact, strict JSON (raises on anything :func:`jsonable` did not clean)."""
    return json.dumps(jsonable(obj), separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode()


def column_values(s: pd.Series) -> list[Any]:
    """One column as JSON-ready Python values (see module docstring)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        days = s.to_numpy("datetime64[D]")
        return [None if np.isnat(d) else str(d) for d in days]
    if pd.api.types.is_bool_dtype(s.dtype):
        return [bool(v) for v in s.to_numpy()]
    if pd.api.types.is_integer_dtype(s.dtype):
        return [int(v) for v in s.to_numpy(np.int64)]
    if pd.api.types.is_float_dtype(s.dtype):
        a = s.to_numpy(np.float64)
        out: list[Any] = a.tolist()
        for i in np.flatnonzero(~np.isfinite(a)):
            out[i] = None
        return out
    return [None if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v))
            else str(v) for v in s.tolist()]


class Outcome:
    """A finished scan (immutable once built); encodings are computed once, on first use."""

    def __init__(self, frame: pd.DataFrame, message: str, stats: dict[str, Any], key: str,
                 data_version: str) -> None:
        self.frame = frame
        self.message = message
        self.stats = stats
        self.key = key
        self.data_version = data_version
        self._lock = threading.Lock()
        self._json: bytes | None = None
        self._csv: bytes | None = None
        self._index: dict[str, int] | None = None
        self._frame_bytes = int(frame.memory_usage(deep=True).sum())

    @property
    def as_of(self) -> str | None:
        v = self.stats.get("as_of")
        return None if v is None else str(v)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def nbytes(self) -> int:
        """Memory held: the frame and the encodings made so far."""
        return self._frame_bytes + len(self._json or b"") + len(self._csv or b"")

    @property
    def encoded(self) -> bool:
        """True once the JSON encoding exists (serving it then costs no CPU)."""
        return self._json is not None

    # -- encodings ---------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Every row as a JSON-ready dict (built on each call; the JSON bytes are cached)."""
        cols = [str(c) for c in self.frame.columns]
        values = [column_values(self.frame[c]) for c in self.frame.columns]
        return [dict(zip(cols, r, strict=True)) for r in zip(*values, strict=True)]

    def json_bytes(self) -> bytes:
        with self._lock:
            if self._json is None:
                rows = self.rows()
                self._json = dumps({
                    "key": self.key, "data_version": self.data_version, "as_of": self.as_of,
                    "message": self.message, "count": len(rows),
                    "columns": [str(c) for c in self.frame.columns], "rows": rows,
                    "stats": self.stats,
                })
            return self._json

    def csv_bytes(self) -> bytes:
        with self._lock:
            if self._csv is None:
                self._csv = formats.to_csv(self.frame).encode()
            return self._csv

    def row(self, symbol: str) -> dict[str, Any] | None:
        with self._lock:
            if self._index is None:
                self._index = {str(v): i for i, v in enumerate(self.frame["Symbol"].tolist())}
            i = self._index.get(symbol)
        if i is None:
            return None
        one = self.frame.iloc[i:i + 1]
        return {str(c): column_values(one[c])[0] for c in one.columns}

    # -- Arrow IPC (the shared cache's format) ----------------------------------------------
    def to_arrow(self) -> bytes:
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = dumps({"format": FORMAT_VERSION, "message": self.message,
                                 "stats": self.stats, "key": self.key,
                                 "data_version": self.data_version})
        table = table.replace_schema_metadata(meta)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    @classmethod
    def from_arrow(cls, data: bytes) -> Outcome:
        """Decode :meth:`to_arrow`; raises ``ValueError`` on anything else (truncated bytes,
        a foreign Arrow stream, metadata of the wrong shape): a shared cache holds whatever
        anyone wrote, and a bad value must be a miss, never an error."""
        try:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"not a technic result (Arrow IPC): {e}") from e
        meta_raw = (table.schema.metadata or {}).get(_META_KEY)
        if meta_raw is None:
            raise ValueError("not a technic result: no technic.result metadata")
        try:
            meta = json.loads(meta_raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"technic result metadata is not JSON: {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"technic result format is not {FORMAT_VERSION}")
        _check_meta(meta)
        if "Symbol" not in table.column_names:
            raise ValueError("technic result without a Symbol column")
        try:
            frame = table.to_pandas()
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise ValueError(f"technic result frame does not convert: {e}") from e
        frame.attrs["stats"] = meta["stats"]
        return cls(frame, meta["message"], dict(meta["stats"]), meta["key"],
                   meta["data_version"])


def _check_meta(meta: dict[str, Any]) -> None:
    """The metadata's shape as :meth:`Outcome.to_arrow` writes it and the service reads it."""
    for k in ("message", "key", "data_version"):
        if not isinstance(meta.get(k), str):
            raise ValueError(f"technic result metadata: {k} is not a string")
    stats = meta.get("stats")
    if not isinstance(stats, dict):
        raise ValueError("technic result metadata: stats is not an object")
    stages = stats.get("stages", [])
    ok = isinstance(stages, list) and all(
        isinstance(s, dict) and isinstance(s.get("stage"), str)
        and isinstance(s.get("seconds"), int | float) and not isinstance(s.get("seconds"), bool)
        and isinstance(s.get("in", 0), int) and isinstance(s.get("out", 0), int)
        and isinstance(s.get("dropped", {}), dict) for s in stages)
    if not ok:
        raise ValueError("technic result metadata: stats.stages is not a list of stages")
    as_of = stats.get("as_of")
    if as_of is not None and not isinstance(as_of, str):
        raise ValueError("technic result metadata: stats.as_of is not a date string")
