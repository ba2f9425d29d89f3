"""Seed front door: ``from technic_v4.scanner_core import run_scan, ScanConfig``.

``run_scan(ScanConfig(...))`` returns exactly ``(df, msg)``; the scan's statistics (stage counts
and drop reasons, timings, cache and API counters, regime) are in ``df.attrs["stats"]``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from technic_v4 import data_engine
from technic_v4.config.scan import ScanConfig
from technic_v4.pipeline import COLUMNS, Progress, scan

__all__ = ["COLUMNS", "ScanConfig", "run_scan"]


def run_scan(config: ScanConfig | None = None, progress: Progress | None = None,
             **overrides: Any) -> tuple[pd.DataFrame, str]:
    """Scan the market; ``overrides`` are ScanConfig fields (``run_scan(max_symbols=100)``)."""
    if config is None:
        config = ScanConfig(**overrides)
    elif overrides:
        config = ScanConfig(**{**config.model_dump(exclude_unset=True), **overrides})
    if not isinstance(config, ScanConfig):
        from technic_v4.errors import ConfigError

        raise ConfigError("config", f"expected a ScanConfig, got {type(config).__name__}")
    res = scan(config, data_engine.market(), progress=progress)
    return res.frame, res.message
