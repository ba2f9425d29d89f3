"""Serial, threaded and Ray execution give identical scans; max_workers is what runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.execution import LocalBackend, get_backend, reset_ray_failure, spans
from technic_v4.pipeline import scan


def test_spans_cover_every_row_once() -> None:
    for n in (0, 1, 7, 256, 1001):
        for k in (1, 2, 3, 64):
            parts = spans(n, k)
            rows = [i for lo, hi in parts for i in range(lo, hi)]
            assert rows == list(range(n))
            assert len(parts) <= max(1, k)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_max_workers_is_the_number_of_threads_that_ran(full_market: MarketData,
                                                       workers: int) -> None:
    backend = LocalBackend(workers)
    seen: set[str] = set()
    import threading

    def probe(*arrays: np.ndarray) -> dict[str, np.ndarray]:
        seen.add(threading.current_thread().name)
        return {"n": np.full(len(arrays[0]), float(len(arrays[0])))}

    panel = full_market.panel(full_market.resolve_as_of(None), 50)
    out = backend.run_chunks(probe, (panel.close,))
    assert backend.threads_used == workers == len(seen)
    assert sum(len(p["n"]) for p in out) == len(panel.close)
    if workers > 1:
        assert threading.current_thread().name not in seen  # really other threads


def test_scan_reports_the_threads_it_used(full_market: MarketData) -> None:
    res = scan(ScanConfig(), full_market, max_workers=2)
    ex = res.stats["execution"]
    assert ex["backend"] == "local" and ex["max_workers"] == 2 and ex["threads_used"] == 2


def test_serial_threaded_identical(full_market: MarketData) -> None:
    serial = scan(ScanConfig(), full_market, max_workers=1).frame
    threaded = scan(ScanConfig(), full_market, max_workers=4).frame
    pd.testing.assert_frame_equal(serial, threaded, check_exact=True)


@pytest.fixture(scope="module")
def ray_market(full_market: MarketData) -> Iterator[MarketData]:
    pytest.importorskip("ray", reason="ray is a test dependency (pip install -e '.[test]')")
    settings = full_market.settings.model_copy(update={"use_ray": True, "max_workers": 2})
    md = MarketData(settings=settings, provider=full_market.provider, store=full_market.store)
    reset_ray_failure()
    yield md
    import ray

    ray.shutdown()


def test_ray_scan_identical_to_local(ray_market: MarketData, full_market: MarketData) -> None:
    backend = get_backend(ray_market.settings)
    assert backend.name == "ray", backend.fallback_reason
    via_ray = scan(ScanConfig(), ray_market)
    assert via_ray.stats["execution"]["backend"] == "ray"
    assert via_ray.stats["execution"]["tasks"] >= 2
    local = scan(ScanConfig(), full_market, max_workers=2)
    pd.testing.assert_frame_equal(via_ray.frame, local.frame, check_exact=True)
    assert not via_ray.stats["notes"]


_NO_RAY = r"""
import sys, datetime as dt
sys.modules["ray"] = None  # as if Ray were not installed
from technic_v4.testing import make_market
from technic_v4.pipeline import scan
from technic_v4.config.scan import ScanConfig
md = make_market(__import__("pathlib").Path(sys.argv[1]), n=60, epoch=dt.date(2025, 9, 2),
                 use_ray=True)
res = scan(ScanConfig(min_history=30, lookback_days=60), md)
print("ROWS", len(res.frame))
print("MSG", res.message)
print("BACKEND", res.stats["execution"]["backend"])
"""


def test_without_ray_the_scan_falls_back_and_says_so(tmp_path: object) -> None:
    r = subprocess.run([sys.executable, "-c", _NO_RAY, str(tmp_path)], capture_output=True,
                       text=True, timeout=300, check=False, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert "BACKEND local" in r.stdout
    assert "ray is not installed" in r.stdout  # in msg
    assert r.stderr.count("ray is not installed") == 1  # logged once
    rows = int(r.stdout.split("ROWS ")[1].split()[0])
    assert rows > 0


def test_numba_cache_dir_setting_is_honoured(tmp_path: object) -> None:
    from pathlib import Path

    cache = Path(str(tmp_path)) / "numba-cache"
    code = ("import numpy as np\nfrom technic_v4.indicators import kernels as k\n"
            "print(k.sma(np.arange(50.0), 5)[-1])")
    env = {**os.environ, "TECHNIC_NUMBA_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 47.0
    assert list(cache.rglob("*.nbi"))  # compiled kernels were cached there


def test_cancel_during_indicators_raises_in_the_caller_only(full_market: MarketData) -> None:
    import threading

    from technic_v4.errors import ScanCancelled

    thread_errors: list[object] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args)
    callers: set[str] = set()

    def progress(stage: str, done: int, total: int) -> None:
        callers.add(threading.current_thread().name)

    def cancel() -> bool:
        return "indicators-started" in callers

    def progress_and_mark(stage: str, done: int, total: int) -> None:
        progress(stage, done, total)
        if stage == "indicators" and done < total:
            callers.add("indicators-started")

    try:
        with pytest.raises(ScanCancelled, match="indicators"):
            scan(ScanConfig(), full_market, progress=progress_and_mark, cancel=cancel,
                 max_workers=2)
    finally:
        threading.excepthook = old_hook
    assert thread_errors == []
    assert callers - {"indicators-started"} == {threading.current_thread().name}
