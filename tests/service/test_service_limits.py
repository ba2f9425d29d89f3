"""The service under load and abuse: heavy reads share the scans' bound and a memory budget,
/health never waits, a shared job outlives one requester's cancel, JSON overflow is 422."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import math

import httpx
from service_support import Gate, Serve

from technic_v4.data.market import MarketData
from technic_v4.service import queries
from technic_v4.service.admission import estimate_bytes
from technic_v4.service.app import ServiceOptions
from technic_v4.testing import END

CFG = {"max_symbols": 120, "top_n": 25}
AS_OF = END - dt.timedelta(days=30)


def _symbol(market: MarketData) -> str:
    return str(market.reference()["Symbol"].iloc[1])


def test_symbol_requests_load_one_listing_and_never_wait_for_scans(
        serve: Serve, market: MarketData) -> None:
    """A symbol history, point in time or long, loads that listing's bars only: it answers while
    every scan slot is taken, and leaves neither a whole-market panel in memory nor panel files."""
    gate = Gate()
    s = serve(market, hook=gate, options=ServiceOptions(max_running_scans=1))
    sym = _symbol(market)
    first = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()  # the only slot is taken by a running scan
    market.clear_memory()
    market.clear_panel_files()
    for params, bars in (({"as_of": str(AS_OF)}, queries.DEFAULT_DAYS), ({"days": 1500}, None)):
        r = s.client.get(f"/v1/symbol/{sym}", params=params)
        assert r.status_code == 200, (params, r.text)
        assert bars is None or r.json()["bars"] == bars
    assert r.json()["bars"] == market.max_bars()  # capped at the stored sessions
    assert len(market.memory) == 0
    files = market.store.path.with_name(market.store.path.stem + ".panels")
    assert not files.exists() or not any(files.iterdir())
    assert s.service.admission.running == 1  # still only the scan
    gate.release.set()
    assert s.wait(first["id"])["state"] == "done"


def test_memory_budget_queues_excess_scans_and_refuses_the_impossible(
        serve: Serve, market: MarketData) -> None:
    listings = len(market.reference())
    sessions = market.store.status()["sessions"]
    scan_cost = estimate_bytes(listings, min(300, sessions))
    # One scan fits, two do not; slots are not the limit.
    budget_mb = math.ceil(scan_cost / 2**20) + 1
    assert 2 * scan_cost > budget_mb << 20
    gate = Gate()
    s = serve(market, hook=gate, options=ServiceOptions(max_running_scans=4,
                                                        memory_budget_mb=budget_mb))
    first = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    second = s.client.post("/v1/scan", json={**CFG, "top_n": 24}).json()
    assert s.client.get(f"/v1/scan/{second['id']}").json()["state"] == "queued"
    assert s.service.admission.running == 1
    gate.release.set()
    assert s.wait(first["id"])["state"] == "done"
    assert s.wait(second["id"])["state"] == "done"
    # More than the whole budget can never run: 422 naming the setting, not a retry.
    small = serve(market, options=ServiceOptions(memory_budget_mb=1))
    r = small.client.post("/v1/scan", json={"max_symbols": 10})
    assert r.status_code == 422 and "TECHNIC_MEMORY_BUDGET_MB" in r.json()["message"]
    # A lookback beyond the stored sessions loads (and is estimated at) the stored sessions.
    roomy = serve(market)
    r = roomy.client.post("/v1/scan", json={"lookback_days": 5000, "max_symbols": 10})
    assert r.status_code == 202 and roomy.wait(r.json()["id"])["state"] == "done"


def test_health_and_other_routes_answer_while_universe_calls_wait(serve: Serve,
                                                                 market: MarketData) -> None:
    """More /v1/universe calls than the thread pool has threads wait on one gated scan; they
    hold no thread, so /health and threaded routes answer at once (the 2 s client timeout is a
    hang check, not a benchmark)."""
    gate = Gate()
    s = serve(market, hook=gate)
    n = 48  # the thread pool has 40
    with concurrent.futures.ThreadPoolExecutor(n) as ex, \
            httpx.Client(base_url=s.url, timeout=60,
                         limits=httpx.Limits(max_connections=n + 4)) as slow:
        calls = [ex.submit(slow.get, "/v1/universe") for _ in range(n)]
        gate.wait_entered()
        deadline = 30.0
        while s.service.jobs.jobs()[0].status()["watchers"] < n and deadline > 0:
            deadline -= 0.05
            concurrent.futures.wait(calls, timeout=0.05)
        assert s.service.jobs.jobs()[0].status()["watchers"] == n
        with httpx.Client(base_url=s.url, timeout=2) as quick:
            assert quick.get("/health").json()["jobs"] == {"queued": 0, "running": 1}
            assert quick.get("/version").status_code == 200  # a threaded route
            assert quick.get("/v1/scans").status_code == 200
        gate.release.set()
        bodies = [c.result().json() for c in calls]
    assert len({b["scan"]["id"] for b in bodies}) == 1 and s.service.jobs.computations == 1
    assert all(b["listings"] == bodies[0]["listings"] for b in bodies)


def test_shared_job_is_cancelled_only_when_every_requester_cancels(serve: Serve,
                                                                 market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    a = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    b = s.client.post("/v1/scan", json=CFG).json()
    assert b["id"] == a["id"] and b["requests"] == 2
    r = s.client.delete(f"/v1/scan/{a['id']}")
    assert r.status_code == 202
    assert r.json()["state"] == "running" and r.json()["cancel_requests"] == 1
    assert not s.service.jobs.get(a["id"]).cancel_event.is_set()  # type: ignore[union-attr]
    r = s.client.delete(f"/v1/scan/{a['id']}")
    assert r.status_code == 202 and r.json()["cancel_requests"] == 2
    gate.release.set()
    assert s.wait(a["id"])["state"] == "cancelled"


def test_shared_job_runs_on_for_the_remaining_requester(serve: Serve,
                                                        market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    a = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    s.client.post("/v1/scan", json=CFG)
    assert s.client.delete(f"/v1/scan/{a['id']}").status_code == 202
    gate.release.set()
    st = s.wait(a["id"])
    assert st["state"] == "done" and st["rows"] == CFG["top_n"]


def test_json_overflow_to_infinity_is_422(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    for raw in (b'{"min_price": 1e999}', b'{"min_price": -1e400}', b'{"top_n": 5, "x": 1e999}'):
        r = s.client.post("/v1/scan", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, raw
        assert r.json()["field"] == "body" and "out of the range" in r.json()["message"]
    assert s.service.jobs.computations == 0
