"""Kernel implementations of the screen language's functions (stub for the PATTERNS branch).

TODO(lead): this file belongs to the ENGINE helper; at merge take ENGINE's version. Only the
contract types of notes/TERMS_API.md are defined here so the PATTERNS modules import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Bars:
    """The inputs every implementation may read: (N, L) float64 fields, ``day`` (N, L) int32."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    day: np.ndarray


Impl = Callable[[Bars, tuple[np.ndarray, ...], Mapping[str, Any]], np.ndarray]
