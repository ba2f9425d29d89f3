"""``backtest.run``'s analyses are computed at the replay's rows (``metrics.Cells``): they
equal, bit for bit, the panel kernels of ``returns`` and ``metrics`` (the versions checked
against brute force and alphalens) over ``(listings, sessions)`` masks of the same rows; the
total-return bars derived from the split panel equal a total-return panel load."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from replay_support import END, build_market

from technic_v4.backtest import metrics as mt
from technic_v4.backtest import returns as rt
from technic_v4.backtest import run
from technic_v4.backtest.runner import BacktestResult, _Grid, aligned_bars
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import BENCHMARK

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))
from pit_support import PitMarket, build

PLAIN = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0, top_n=8,
                   columns={"Gap": "open / close[1] - 1"})


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("runner"))
    yield m
    m.close()


def panel_analyses(res: BacktestResult, md: MarketData) -> dict[str, Any]:
    """The analyses from (N, T) panels and masks (how ``run`` computed them before)."""
    rep = res.replay
    bars = aligned_bars(md, "total")
    ref = md.reference()
    n, t = bars.close.shape
    cols = np.searchsorted(bars.sessions, rep.sessions.to_numpy("datetime64[D]"))

    def mask(frame: pd.DataFrame, listing: np.ndarray, values: str | None = None
             ) -> np.ndarray:
        si = np.searchsorted(bars.sessions, frame["AsOf"].to_numpy("datetime64[D]"))
        out = np.zeros((n, t), dtype=bool) if values is None else np.full((n, t), np.nan)
        out[listing, si] = True if values is None else frame[values].to_numpy(np.float64)
        return out

    universe = mask(rep.universe, rep.universe_listing)
    matched = mask(rep.matches, rep.match_listing)
    last = bars.last_session
    price = np.where(last >= 0, bars.close[np.arange(n), np.maximum(last, 0)], np.nan)
    spy = int(np.flatnonzero(ref["Symbol"].astype(str).to_numpy() == BENCHMARK)[0])
    fwd = rt.forward_return_panels(bars.open, bars.close, res.horizons, delist_session=last,
                                   delist_price=price, universe=universe,
                                   benchmark_open=bars.open[spy],
                                   benchmark_close=bars.close[spy])
    li = rep.match_listing
    si = np.searchsorted(bars.sessions, rep.matches["AsOf"].to_numpy("datetime64[D]"))
    forward = rep.matches[["AsOf", "Symbol"]].copy()
    summary = []
    for h, f in fwd.items():
        assert f.over_benchmark is not None
        forward[f"Fwd{h}D"] = f.raw[li, si]
        forward[f"Excess{h}D"] = f.over_universe[li, si]
        forward[f"ExcessSPY{h}D"] = f.over_benchmark[li, si]
        for name, panel in (("return", f.raw), ("excess_universe", f.over_universe),
                            ("excess_spy", f.over_benchmark)):
            st = mt.screen_stats(matched[:, cols], panel[:, cols])
            summary.append({"horizon": h, "of": name, "n": st.n, "hit_rate": st.hit_rate,
                            "mean": st.mean, "median": st.median, "t_stat": st.t_stat,
                            "session_t_stat": st.session_t_stat})
    out: dict[str, Any] = {"forward": forward,
                           "summary": pd.DataFrame(summary).set_index(["horizon", "of"])}
    assert res.rank_by is not None
    on_universe = res.rank_by in rep.universe.columns
    frame, listing = ((rep.universe, rep.universe_listing) if on_universe
                      else (rep.matches, rep.match_listing))
    score = mt.prepare_score(mask(frame, listing, res.rank_by)[:, cols])
    raw = {h: f.raw[:, cols] for h, f in fwd.items()}
    out["ic"] = pd.DataFrame({h: mt.information_coefficient(score, y) for h, y in raw.items()},
                             index=rep.sessions)
    out["ic_decay"] = mt.ic_decay(score, raw)
    buckets = mt.quantize(score, 5)
    out["quantiles"] = {h: mt.mean_return_by_quantile(buckets, y, 5) for h, y in raw.items()}
    out["turnover"] = pd.Series(mt.quantile_turnover(buckets, 5), index=rep.sessions)
    return out


@pytest.mark.parametrize(("rank_by", "workers"), [("TechRating", 3), ("Gap", 1)])
def test_analyses_at_the_rows_equal_the_panel_kernels(md: MarketData, rank_by: str,
                                                      workers: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the universe (TechRating) and over the matches (a user column), horizons on
    threads or not: forward and excess returns per row, the summary, IC, its decay, quintile
    returns and turnover."""
    monkeypatch.setattr(md.settings, "max_workers", workers)
    res = run(PLAIN, "2026-01-05", END, horizons=(1, 5, 21), rank_by=rank_by, data=md)
    want = panel_analyses(res, md)
    got = res.analyses
    assert len(got["forward"]) == len(res.matches) > 0
    for key in ("forward", "summary", "ic", "ic_decay"):
        pd.testing.assert_frame_equal(got[key], want[key], check_exact=True)
    pd.testing.assert_series_equal(got["turnover"], want["turnover"], check_exact=True)
    for h, q in want["quantiles"].items():
        for f in ("by_session", "count", "mean", "std_error", "spread"):
            np.testing.assert_array_equal(getattr(got["quantiles"][h], f), getattr(q, f))
    assert np.isfinite(got["ic"][1]).sum() > 10  # not a comparison of empty answers
    assert {"replay", "bars", "cells", "horizons", "trades"} <= set(res.seconds_by_step)


def test_total_return_bars_from_the_split_panel_equal_a_total_load(tmp_path: Path) -> None:
    """Listings with a split and dividends, dividends only, a split only, a delisting: the
    open and close re-adjusted from the split panel are the total-return panel's bits."""
    d = dt.date
    market = PitMarket(
        n=8, seed=3, first=d(2025, 6, 2), last=d(2026, 3, 31),
        splits={"S000": [(d(2025, 11, 3), 2.0)], "S001": [(d(2026, 1, 15), 0.25)]},
        dividends={"S000": [(d(2025, 9, 2), 0.4), (d(2026, 2, 2), 0.3)],
                   "S002": [(d(2025, 12, 1), 0.5)]},
        delist={"S003": (d(2026, 2, 20), "acquired")})
    m = build(tmp_path, market, market.last)
    try:
        grid = _Grid(m, "split")
        o, c = grid.total_return(("open", "close"))
        total = aligned_bars(m, "total")
        np.testing.assert_array_equal(o, total.open)
        np.testing.assert_array_equal(c, total.close)
        np.testing.assert_array_equal(grid.total_return(("close",), by_session=True)[0],
                                      total.close.T)
        split = aligned_bars(m, "split")
        assert not np.array_equal(c, split.close, equal_nan=True)  # the dividends count
        np.testing.assert_array_equal(grid.last_session, total.last_session)
    finally:
        m.close()


def test_trades_beside_the_statistics_equal_trades_after_them(
        md: MarketData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans played out on a thread beside the statistics (max_workers > 1) or after them:
    the same trades, portfolio and statistics."""
    got = {}
    for workers in (1, 2):
        monkeypatch.setattr(md.settings, "max_workers", workers)
        got[workers] = run(PLAIN, "2026-01-05", END, horizons=(1, 5), rank_by="TechRating",
                           data=md).analyses
    assert len(got[1]["trades"]) > 0
    pd.testing.assert_frame_equal(got[1]["trades"], got[2]["trades"], check_exact=True)
    pd.testing.assert_frame_equal(got[1]["portfolio"].curve, got[2]["portfolio"].curve,
                                  check_exact=True)
    pd.testing.assert_frame_equal(got[1]["summary"], got[2]["summary"], check_exact=True)
    assert list(got[1]) == list(got[2])


def test_analyses_report_progress_and_stop_on_cancel(md: MarketData) -> None:
    """After the replay, the analyses tick ("analyses", k, 3) and a cancel raised between
    them stops the run (a cancelled job does not wait for the statistics and plans)."""
    from technic_v4.errors import ScanCancelled

    cfg = ScanConfig(min_history=60, min_market_cap=0, min_dollar_volume=0, top_n=8)
    seen: list[tuple[str, int, int]] = []
    run(cfg, "2025-10-01", END, data=md, on_progress=lambda *a: seen.append(a))
    assert [x for x in seen if x[0] == "analyses"] == [("analyses", k, 3) for k in range(4)]
    stop = {"now": False}

    def progress(step: str, done: int, total: int) -> None:
        stop["now"] = step == "analyses" and done == 1

    with pytest.raises(ScanCancelled, match="analyses"):
        run(cfg, "2025-10-01", END, data=md, on_progress=progress, cancel=lambda: stop["now"])
