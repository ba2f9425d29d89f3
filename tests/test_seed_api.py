"""The seed's public API (../shared/seed/TODO.md), exactly as its users call it."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from technic_v4 import data_engine
from technic_v4.data.market import MarketData
from technic_v4.scanner_core import ScanConfig, run_scan


def test_get_price_history_batch_shapes(seed_api: MarketData) -> None:
    ref = seed_api.reference()
    syms = ref["Symbol"].head(5).tolist()
    out = data_engine.get_price_history_batch(syms, days=90)
    assert set(out) <= set(syms) and len(out) >= 4
    for f in out.values():
        assert list(f.columns) == ["Open", "High", "Low", "Close", "Volume"]
        assert isinstance(f.index, pd.DatetimeIndex)
        assert f.index.is_monotonic_increasing and f.index.is_unique
        assert len(f) <= 90
    # days counts sessions: a full-history name has exactly 90 bars
    assert max(len(f) for f in out.values()) == 90


def test_history_respects_as_of(seed_api: MarketData) -> None:
    sym = seed_api.reference()["Symbol"].iloc[0]
    as_of = dt.date(2026, 6, 15)
    f = data_engine.get_price_history(sym, 50, as_of=as_of)
    assert f is not None
    assert f.index[-1].date() == as_of and len(f) == 50
    later = data_engine.get_price_history(sym, 400)
    assert later is not None
    pd.testing.assert_frame_equal(later.loc[: pd.Timestamp(as_of)].tail(50), f)


def test_unknown_symbols_are_absent_and_bad_days_raise(seed_api: MarketData) -> None:
    assert data_engine.get_price_history_batch(["NOSUCH"], 10) == {}
    assert data_engine.get_price_history("NOSUCH", 10) is None
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="days"):
            data_engine.get_price_history_batch(["SPY"], bad)  # type: ignore[arg-type]


def test_cache_stats_are_per_request_and_honest(seed_api: MarketData) -> None:
    seed_api.clear_memory()
    run_scan(ScanConfig(max_symbols=100))
    cold = data_engine.get_cache_stats()
    assert cold["last_request"]["served_by"]["store"] > 0
    assert cold["last_request"]["served_by"]["memory"] == 0
    assert cold["hit_rate"] == 100.0  # all from the local store, no vendor request
    assert cold["cache_size"] > 0
    run_scan(ScanConfig(max_symbols=100))
    warm = data_engine.get_cache_stats()
    assert warm["last_request"]["served_by"]["memory"] > 0
    assert warm["last_request"]["served_by"]["store"] == 0
    assert warm["last_request"]["api_calls_total"] == 0
    assert warm["cumulative"]["requested"] == (cold["last_request"]["requested"]
                                               + warm["last_request"]["requested"])
    data_engine.clear_memory_cache()
    assert data_engine.get_cache_stats()["cache_size"] == 0
    df, _ = run_scan(ScanConfig(max_symbols=100))
    assert len(df) > 0


def test_cold_fill_counts_vendor_rows_and_requests(tmp_path: object) -> None:
    from pathlib import Path

    from technic_v4.testing import make_market

    md = make_market(Path(str(tmp_path)), n=50, epoch=dt.date(2025, 9, 2))
    data_engine._market = md
    try:
        _, msg = run_scan(ScanConfig(min_history=30, lookback_days=60))
        s = data_engine.get_cache_stats()
        sessions = len(md.store.stored_sessions())
        assert s["last_request"]["api_calls"] == {"reference": 1, "actions": 1,
                                                  "grouped_daily": sessions}
        assert s["last_request"]["hit_rate"] < 100.0
        assert f"{s['last_request']['api_calls_total']} API calls" in msg
        run_scan(ScanConfig(min_history=30, lookback_days=60))
        s = data_engine.get_cache_stats()
        assert s["last_request"]["api_calls"] == {}
        assert s["hit_rate"] == 100.0
    finally:
        data_engine._market = None
        md.store.close()


def test_settings_use_ray_is_exposed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``settings.use_ray = True`` (the seed's line) reaches the next scan of the front door: here
    without Ray's backend importable, so the scan runs locally and says why."""
    import sys

    from technic_v4.config.settings import settings
    from technic_v4.execution import reset_ray_failure

    monkeypatch.setenv("TECHNIC_SYNTHETIC_LISTINGS", "60")
    monkeypatch.setenv("TECHNIC_SYNTHETIC_EPOCH", "2025-09-02")
    monkeypatch.setenv("TECHNIC_SYNTHETIC_END", "2026-11-20")
    monkeypatch.setitem(sys.modules, "technic_v4.execution.ray_backend", None)  # not installed
    data_engine.set_market(None)
    reset_ray_failure()
    try:
        cfg = ScanConfig(min_history=30, lookback_days=60)
        df, msg = run_scan(cfg)
        assert df.attrs["stats"]["execution"]["fallback_reason"] is None  # Ray not asked for
        settings.use_ray = True
        df, msg = run_scan(cfg)
        ex = df.attrs["stats"]["execution"]
        assert ex["backend"] == "local" and "ray is not installed" in ex["fallback_reason"]
        assert "ray is not installed" in msg and len(df) > 0
        with pytest.raises(ValueError):
            settings.max_workers = 0
    finally:
        data_engine.set_market(None)
        reset_ray_failure()


def test_history_batch_counts_only_what_was_asked(seed_api: MarketData) -> None:
    sym = seed_api.reference()["Symbol"].iloc[0]
    out = data_engine.get_price_history_batch([sym], days=50)
    s = data_engine.get_cache_stats()["last_request"]
    assert s["requested"] == len(out[sym]) == 50
    assert sum(s["served_by"].values()) == 50
