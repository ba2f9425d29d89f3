"""Historical scans: the same scan at many as-of sessions, from one panel load.

The panel is loaded once, as of the last date, with ``lookback_days`` (or the bars the screen
needs, if more) plus the span of the dates
in bars; each date's view is cut from it (``Panel.at``), which equals loading that date from the
store (adjusted as of each date). Dates are split into groups; with ``use_ray`` each group is
one Ray task (the panel goes
into the object store once) - the case where a cluster pays off, since dates are independent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.execution import LocalBackend, get_backend, spans


def _evaluate_dates(config: ScanConfig, ref: pd.DataFrame, panel: Panel,
                    days: Sequence[dt.date], sess_days: np.ndarray,
                    shares: dict[dt.date, np.ndarray] | None = None
                    ) -> list[tuple[dt.date, pd.DataFrame, dict[str, Any]]]:
    from technic_v4.pipeline import BENCHMARK, REGIME_BARS, _Stages, evaluate

    out = []
    spy = np.flatnonzero(panel.symbols == BENCHMARK)
    for day in days:
        stages = _Stages(None, None)
        notes: list[str] = []
        # Capped at the panel's width: lookback_days=None asks for every stored bar.
        view = panel.at(day, min(config.bars_needed, panel.close.shape[1]))
        bench = None
        if config.lookback < REGIME_BARS and len(spy):
            bench = panel.rows(spy).at(day, REGIME_BARS).close[0]
        sd = sess_days[sess_days <= np.datetime64(day, "D").astype(np.int64)]
        frame, reg, _ = evaluate(config, ref, view, day, sd, LocalBackend(1), stages, notes,
                                 bench, (shares or {}).get(day))
        out.append((day, frame, {"stages": [s.as_dict() for s in stages],
                                 "regime": reg.as_dict(), "notes": notes}))
    return out


def scan_history(config: ScanConfig, dates: Sequence[dt.date | str],
                 data: MarketData | None = None, groups: int | None = None) -> pd.DataFrame:
    """One long frame: the scan of ``config`` at each date (column ``AsOf`` first).

    ``df.attrs["stats"]`` maps each as-of session to its stages, regime and notes. Dates that
    are not sessions mean the session before; duplicates collapse.
    """
    from technic_v4 import data_engine

    data = data or data_engine.market()
    if not dates:
        raise ValueError("dates: give at least one as-of date")
    with data.request():
        data.ensure_current(wait=False)  # readers never wait for another update
        days = sorted({data.resolve_as_of(d) for d in dates})
        last = days[-1]
        sess = data.sessions(last)
        span = int((sess > np.datetime64(days[0], "D")).sum())
        ref = data.reference()
        from technic_v4.pipeline import REGIME_BARS, check_bars

        # A screen needing more sessions than stored before the first date: an error naming it.
        check_bars(config, min(data.max_bars(), len(data.sessions(days[0]))), days[0])
        panel = data.panel(last, max(config.bars_needed, REGIME_BARS) + span)
        sess_days = sess.astype(np.int64)
        # Shares outstanding as of each date that a later split changed (market cap at D).
        shares = {d: sh for d in days if (sh := data.shares_as_of(d)) is not None}
        backend = get_backend(data.settings)
        n_groups = groups or max(1, min(len(days), 2 * backend.workers))
        parts = [days[lo:hi] for lo, hi in spans(len(days), n_groups)]
        if backend.name == "ray":
            import ray

            from technic_v4.execution.ray_backend import remote_history

            refs = (ray.put(ref), ray.put(panel), ray.put(sess_days))
            futures = [remote_history.remote(config, *refs[:2], part, refs[2], shares)
                       for part in parts]
            results = [r for chunk in ray.get(futures) for r in chunk]
        elif len(parts) > 1:
            # Dates are independent and the kernels release the GIL: one thread per group.
            with ThreadPoolExecutor(max_workers=backend.workers,
                                    thread_name_prefix="technic-history") as ex:
                chunks = list(ex.map(
                    lambda part: _evaluate_dates(config, ref, panel, part, sess_days, shares),
                    parts))
            results = [r for chunk in chunks for r in chunk]
        else:
            results = _evaluate_dates(config, ref, panel, parts[0], sess_days, shares)
    frames = []
    stats: dict[str, Any] = {}
    for day, frame, st in results:
        frames.append(frame.assign(AsOf=pd.Timestamp(day)))
        stats[str(day)] = st
    out = pd.concat(frames, ignore_index=True)
    out = out[["AsOf", *[c for c in out.columns if c != "AsOf"]]]
    out.attrs["stats"] = {"dates": stats, "backend": backend.describe(), "groups": len(parts)}
    return out
