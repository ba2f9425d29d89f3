"""A free-tier key: the vendor's rate limit (429 when exceeded) met by the provider's limiter,
a fill that shows its progress on stderr, stops promptly on Ctrl-C and resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from polygon_setup import KEY, P_EPOCH

from technic_v4.config.settings import Settings
from technic_v4.data.calendar import latest_completed_session, sessions_between
from technic_v4.data.market import MarketData
from technic_v4.data.progress import RateAwareTimeRemaining, fill_progress
from technic_v4.data.providers.polygon import PolygonProvider
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.data.store import Store
from technic_v4.errors import ScanCancelled
from technic_v4.testing import END
from technic_v4.vendor_server import VendorServer

Vendor = Callable[..., VendorServer]
Polygon = Callable[..., PolygonProvider]
SESSIONS = [d.astype(dt.date) for d in sessions_between(P_EPOCH, END)]


def statuses(srv: VendorServer, endpoint: str = "grouped_daily") -> list[int]:
    return [r.status for r in srv.requests if r.endpoint == endpoint]


def test_the_vendor_answers_429_beyond_its_rate_limit(vendor: Vendor) -> None:
    srv = vendor(rate_limit=(3, 60.0))
    url = f"/v2/aggs/grouped/locale/us/market/stocks/{END}"
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        got = [c.get(url) for _ in range(5)]
        assert [r.status_code for r in got] == [200, 200, 200, 429, 429]
        assert 55 <= int(got[3].headers["Retry-After"]) <= 60
        assert "maximum requests per minute" in got[3].json()["error"]
        srv.rate_limit = None  # lifted while running
        assert c.get(url).status_code == 200
    assert [r.fault for r in srv.requests].count("rate_limited") == 2


def test_without_a_limiter_the_vendor_answers_429(vendor: Vendor, polygon: Polygon) -> None:
    # The control for the next test: the loopback vendor really enforces its limit.
    srv = vendor(rate_limit=(4, 1.0))
    p = polygon(srv, max_retries=3)
    p.bars_for_sessions(SESSIONS[:8])
    assert 429 in statuses(srv)


def test_a_fill_at_the_vendors_rate_makes_no_429_and_shows_progress_on_stderr(
        vendor: Vendor, polygon: Polygon, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws its bar as on a terminal
    caplog.set_level(logging.INFO)
    srv = vendor()
    polygon(srv).reference()  # reference data cached beforehand: the fill is the test
    srv.reset_log()
    srv.rate_limit = (12, 1.5)
    # The default second of slack absorbs the time from the limiter to the vendor's count.
    p = polygon(srv, rate_limit=12, rate_period_s=1.5)
    md = MarketData(Settings(data_dir=tmp_path / "store", progress=True), provider=p)
    try:
        rep = md.ensure_current()
    finally:
        md.close()
    assert rep.sessions_fetched == SESSIONS and rep.failed == {}
    assert statuses(srv) == [200] * len(SESSIONS)  # not one 429
    # Waiting for a slot is neither a retry (one attempt per session) nor worth a warning.
    assert p.request_counts["grouped_daily"] == len(SESSIONS)
    assert "retry" not in caplog.text
    out, err = capsys.readouterr()
    assert f"Storing {len(SESSIONS)} sessions" in err and "Storing" not in out


def test_the_time_remaining_is_never_faster_than_the_rate_limit(vendor: Vendor,
                                                                polygon: Polygon) -> None:
    p = polygon(vendor(), rate_limit=5)  # the free tier: 5 a minute (+1 s of slack)
    assert p.min_request_interval_s == pytest.approx(61 / 5)
    bar = fill_progress(False, p)
    (eta,) = [c for c in bar.columns if isinstance(c, RateAwareTimeRemaining)]
    task_id = bar.add_task("Storing 100 sessions", total=100)
    bar.advance(task_id, 5)  # the first burst is quick ...
    time.sleep(0.05)
    bar.advance(task_id, 5)
    task = bar.tasks[0]
    assert task.time_remaining is not None and task.time_remaining < 60  # ... rich's guess
    assert eta.render(task).plain == str(dt.timedelta(seconds=round(90 * 61 / 5)))  # 0:18:18
    unlimited = fill_progress(False, polygon(vendor()))
    (eta,) = [c for c in unlimited.columns if isinstance(c, RateAwareTimeRemaining)]
    assert eta.seconds_per_item is None


# -- Ctrl-C in a real process, and the rerun ---------------------------------------------------


def _cli_env(srv: VendorServer, data_dir: Path, epoch: dt.date, rpm: int | None
             ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TECHNIC_") and k not in ("POLYGON_API_KEY", "MASSIVE_API_KEY")}
    env.update(TECHNIC_DATA_PROVIDER="polygon", TECHNIC_DATA_DIR=str(data_dir),
               TECHNIC_POLYGON_BASE_URL=srv.url, TECHNIC_POLYGON_HISTORY_START=str(epoch),
               POLYGON_API_KEY=KEY)
    if rpm is not None:
        env["TECHNIC_POLYGON_RPM"] = str(rpm)
    return env


def _wait_until(cond: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"technic exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the vendor to see the requests")
        time.sleep(0.05)


def test_ctrl_c_stops_a_rate_limited_fill_promptly_and_a_rerun_resumes(
        vendor: Vendor, tmp_path: Path) -> None:
    latest = latest_completed_session()
    epoch = latest - dt.timedelta(days=40)  # ~27 sessions, today's calendar
    srv = vendor(provider=SyntheticProvider(n_listings=60, seed=7, epoch=epoch, end=latest))
    want = [d.astype(dt.date) for d in sessions_between(epoch, latest)]
    data_dir = tmp_path / "data"
    with PolygonProvider(KEY, base_url=srv.url, cache_dir=data_dir, history_start=epoch) as p:
        p.reference()  # the reference cache (a day's TTL) is warm: the fill is what is limited
        store_path = data_dir / f"{p.store_key}.duckdb"
    srv.reset_log()
    srv.rate_limit = (10, 60.0)  # 10 a minute: after 10 sessions, a minute's wait
    exe = [sys.executable, "-m", "technic_v4.cli", "data", "update"]
    proc = subprocess.Popen(exe, env=_cli_env(srv, data_dir, epoch, rpm=10), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_until(lambda: statuses(srv).count(200) >= 10, 120, proc)
        time.sleep(3)  # the fill stores what it got once the next request keeps it waiting
        assert statuses(srv) == [200] * 10  # the limiter holds the rest back: no 429
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)  # not the ~50 s until the next slot
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert stopped_in < 30
    # What was fetched was committed; a rerun asks for the rest only, once each.
    asked_first = [r.path.rsplit("/", 1)[-1] for r in srv.requests
                   if r.endpoint == "grouped_daily"]
    store = Store(store_path)
    try:
        stored = [d.astype(dt.date) for d in store.stored_sessions()]
    finally:
        store.close()
    assert [str(d) for d in stored] == sorted(asked_first) and stored == want[:10]
    srv.rate_limit = None
    srv.reset_log()
    r = subprocess.run(exe, env=_cli_env(srv, data_dir, epoch, rpm=None), text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    asked_again = [r.path.rsplit("/", 1)[-1] for r in srv.requests
                   if r.endpoint == "grouped_daily"]
    assert sorted(asked_again) == [str(d) for d in want[10:]]
    assert srv.counts.get("tickers", 0) == srv.counts.get("ticker_details", 0) == 0
    assert json.loads(r.stdout)["sessions_fetched"] == len(want) - 10
    store = Store(store_path)
    try:
        assert [d.astype(dt.date) for d in store.stored_sessions()] == want
    finally:
        store.close()


def test_cancel_ends_a_wait_for_a_slot_without_a_request(vendor: Vendor,
                                                         polygon: Polygon) -> None:
    srv = vendor()
    p = polygon(srv, rate_limit=1)  # one request a minute
    p.bars_for_sessions(SESSIONS[:1])
    got: list[ScanCancelled] = []

    def second() -> None:
        try:
            p.bars_for_sessions(SESSIONS[1:2])  # waits about a minute for its slot ...
        except ScanCancelled as e:
            got.append(e)

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    p.cancel()  # ... unless the caller gives up
    t.join(timeout=10)
    assert not t.is_alive()
    assert len(got) == 1 and "abandoned" in str(got[0])
    assert srv.counts == {"grouped_daily": 1} and p.request_counts["grouped_daily"] == 1
