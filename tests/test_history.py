"""Historical scans equal individual point-in-time scans, locally and as Ray tasks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.execution import reset_ray_failure
from technic_v4.history import scan_history
from technic_v4.pipeline import scan

DATES = [dt.date(2026, 6, 1), dt.date(2026, 8, 14), dt.date(2026, 10, 30), dt.date(2026, 11, 20)]


@pytest.mark.parametrize("day", [dt.date(2026, 3, 2), dt.date(2026, 9, 15), dt.date(2026, 11, 20)])
def test_panel_at_equals_loading_that_day(small_market: MarketData, day: dt.date) -> None:
    big = small_market.panel(dt.date(2026, 11, 20), 400)
    view = big.at(day, 120)
    direct = small_market.panel(day, 120)
    np.testing.assert_array_equal(view.day, direct.day)
    for f in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(view, f), getattr(direct, f))


def _individual(md: MarketData, cfg: ScanConfig) -> pd.DataFrame:
    frames = []
    for d in DATES:
        f = scan(cfg.model_copy(update={"as_of_date": d}), md, max_workers=1).frame
        frames.append(f.assign(AsOf=pd.Timestamp(d)))
    out = pd.concat(frames, ignore_index=True)
    return out[["AsOf", *[c for c in out.columns if c != "AsOf"]]]


def test_history_equals_individual_scans(small_market: MarketData) -> None:
    cfg = ScanConfig(top_n=25)
    hist = scan_history(cfg, [*DATES, "2026-11-21"], small_market)  # a Saturday collapses
    assert list(hist.attrs["stats"]["dates"]) == [str(d) for d in DATES]
    pd.testing.assert_frame_equal(hist, _individual(small_market, cfg), check_exact=True)


def test_history_on_ray_equals_local(small_market: MarketData) -> None:
    pytest.importorskip("ray")
    cfg = ScanConfig(top_n=25)
    settings = small_market.settings.model_copy(update={"use_ray": True, "max_workers": 2})
    md = MarketData(settings=settings, provider=small_market.provider, store=small_market.store)
    reset_ray_failure()
    try:
        hist = scan_history(cfg, DATES, md, groups=2)
    finally:
        import ray

        ray.shutdown()
    assert hist.attrs["stats"]["backend"]["backend"] == "ray"
    assert hist.attrs["stats"]["groups"] == 2
    pd.testing.assert_frame_equal(hist, _individual(small_market, cfg), check_exact=True)


def test_history_needs_dates(small_market: MarketData) -> None:
    with pytest.raises(ValueError, match="dates"):
        scan_history(ScanConfig(), [], small_market)
