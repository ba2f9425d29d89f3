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
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bars:
    """The inputs every implementation may read: (N, L) float64 fields and ``day`` (N, L) int32,
    days since 1970-01-01, -1 in padding."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    day: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    @classmethod
    def of(cls, panel: Any) -> Bars:
        """The bars of a :class:`~technic_v4.data.panel.Panel` (or anything with its fields)."""
        return cls(panel.open, panel.high, panel.low, panel.close, panel.volume, panel.day)


Impl = Callable[[Bars, tuple[np.ndarray, ...], Mapping[str, Any]], np.ndarray]

IMPLS: dict[str, Impl] = {}

from technic_v4.terms.kernels import indicators as _indicators  # noqa: E402
from technic_v4.terms.kernels import windows as _windows  # noqa: E402

IMPLS.update(_windows.IMPLS)
IMPLS.update(_indicators.IMPLS)

# TODO(lead): remove at merge -- every module exists then; import them unguarded like windows.
for _module in ("candles", "patterns"):
    try:
        _mod = __import__(f"technic_v4.terms.kernels.{_module}", fromlist=["IMPLS"])
    except ImportError:  # TODO(lead): remove at merge
        continue
    IMPLS.update(_mod.IMPLS)

__all__ = ["IMPLS", "Bars", "Impl"]
