"""Panel kernels of the screen language: one signature, one registry.

Every function of :mod:`technic_v4.terms.catalog` has an implementation ``impl(bars, series_args,
params) -> (N, L) array`` registered in :data:`IMPLS` under its catalogue name:

* ``bars`` -- the panel's fields (:class:`Bars`); implicit inputs (``atr`` reads high, low, close)
  come from here;
* ``series_args`` -- the evaluated ``series``/``condition`` parameters in catalogue order, each
  (N, L) (float64 for numbers, bool for conditions);
* ``params`` -- the literal parameters by catalogue name (windows as int, numbers as float,
  choices as str).

Orientation and NaN policy are those of :mod:`technic_v4.indicators.kernels`: (N rows, L bars)
float64, oldest bar first, right-aligned with NaN padding on the left; a number series is NaN where
undefined, a condition series False there ("NaN: the clause does not hold").

The implementations live in one module per group, each exporting its own ``IMPLS``:
:mod:`.windows` (highest … between), :mod:`.indicators` (sma … stoch_d, and ``ta_impl`` for
``ta.<name>``), :mod:`.candles` (``cdl_*``), :mod:`.patterns` (chart patterns) and
:mod:`.timeframes` (``resample`` to weekly / monthly bars).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_FIELDS = ("open", "high", "low", "close", "volume", "day")


class Bars:
    """The inputs every implementation may read: (N, L) float64 fields and ``day`` (N, L) int32,
    days since 1970-01-01, -1 in padding.

    A field may be gathered on first use (:meth:`of` with ``rows``, :meth:`map`): a screen that
    reads only closes never copies the other fields of the survivors' rows."""

    __slots__ = ("_cache", "_source")

    def __init__(self, open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                 volume: np.ndarray, day: np.ndarray) -> None:
        self._cache: dict[str, np.ndarray] = dict(zip(_FIELDS, (open, high, low, close, volume,
                                                                day), strict=True))
        self._source: Callable[[str], np.ndarray] | None = None

    @classmethod
    def lazy(cls, source: Callable[[str], np.ndarray]) -> Bars:
        """Bars whose field ``f`` is ``source(f)``, computed once on first use."""
        b = cls.__new__(cls)
        b._cache = {}
        b._source = source
        return b

    def _field(self, name: str) -> np.ndarray:
        v = self._cache.get(name)
        if v is None:
            assert self._source is not None
            v = self._cache[name] = self._source(name)
        return v

    @property
    def open(self) -> np.ndarray:
        return self._field("open")

    @property
    def high(self) -> np.ndarray:
        return self._field("high")

    @property
    def low(self) -> np.ndarray:
        return self._field("low")

    @property
    def close(self) -> np.ndarray:
        return self._field("close")

    @property
    def volume(self) -> np.ndarray:
        return self._field("volume")

    @property
    def day(self) -> np.ndarray:
        return self._field("day")

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Bars:
        """These bars with ``fn`` applied to each field (lazily, when that field is read)."""
        return Bars.lazy(lambda f: fn(self._field(f)))

    @classmethod
    def of(cls, panel: Any, rows: np.ndarray | None = None) -> Bars:
        """The bars of a :class:`~technic_v4.data.panel.Panel` (or anything with its fields);
        with ``rows``, those rows only, each field gathered when first read."""
        if rows is None:
            return cls(*(getattr(panel, f) for f in _FIELDS))
        picked = np.asarray(rows, dtype=np.int64)
        return cls.lazy(lambda f: np.ascontiguousarray(getattr(panel, f)[picked]))


Impl = Callable[[Bars, tuple[np.ndarray, ...], Mapping[str, Any]], np.ndarray]

IMPLS: dict[str, Impl] = {}

# Below the definitions above, which these modules import.
from technic_v4.terms.kernels import candles as _candles  # noqa: E402
from technic_v4.terms.kernels import indicators as _indicators  # noqa: E402
from technic_v4.terms.kernels import patterns as _patterns  # noqa: E402
from technic_v4.terms.kernels import windows as _windows  # noqa: E402

for _module in (_windows, _indicators, _candles, _patterns):
    IMPLS.update(_module.IMPLS)

__all__ = ["IMPLS", "Bars", "Impl"]
