"""Never stale: after the provider has a new session, an identical request gets a result as of
that session, never yesterday's from the job table, the memory cache or Redis; and a running
service picks the session up on its own."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from service_support import AdvancingProvider, Running, Serve

from technic_v4.data.calendar import sessions_between
from technic_v4.data.market import MarketData
from technic_v4.service.app import ServiceOptions
from technic_v4.testing import END, EPOCH, FaultyProvider, RedisServer, make_market

N = 150
BODY = {"max_symbols": 60, "top_n": 20}
OTHER = {"max_symbols": 50, "top_n": 10}
SESSIONS = sessions_between(EPOCH, END)
DAY1, DAY2 = SESSIONS[-2].astype(dt.date), SESSIONS[-1].astype(dt.date)


def _market(path: Path, end: dt.date, **settings: Any) -> tuple[MarketData, AdvancingProvider]:
    prov = AdvancingProvider(n_listings=N, seed=7, epoch=EPOCH, end=end)
    md = make_market(path, n=N, provider=prov, **settings)
    md.ensure_current()
    return md, prov


def _as_of(s: Running, status: dict[str, Any]) -> str:
    return str(s.client.get(status["links"]["results"]).json()["as_of"])


def test_new_session_is_never_served_from_yesterdays_result(serve: Serve, tmp_path: Path,
                                                            redis_server: RedisServer) -> None:
    # A keeps one job (so BODY's job leaves its job table, its result stays in memory); C
    # starts later on its own store, sharing A's Redis.
    a_md, a_prov = _market(tmp_path / "a", DAY1, redis_url=redis_server.url)
    c_md, c_prov = _market(tmp_path / "c", DAY1, redis_url=redis_server.url)
    opts = ServiceOptions(max_running_scans=1, max_queued_scans=0, max_jobs=1,
                          refresh_interval_s=3600, redis_prefix=f"t-{uuid.uuid4().hex}:")
    try:
        a = serve(a_md, options=opts)
        first = a.scan(BODY)
        assert first["source"] == "computed" and _as_of(a, first) == str(DAY1)
        a.scan(OTHER)  # evicts BODY's job from A's job table
        assert a.service.jobs.get(first["id"]) is None

        a_prov.advance(DAY2)
        c_prov.advance(DAY2)

        # A: yesterday's result is in its memory cache and in Redis; neither is served.
        after = a.scan(BODY)
        assert after["source"] == "computed", after
        assert _as_of(a, after) == str(DAY2)
        assert after["key"] != first["key"] and after["data_version"] != first["data_version"]
        again = a.client.post("/v1/scan", json=BODY).json()  # now current: served as usual
        assert again["id"] == after["id"] and again["served_by"] == "shared"

        # C's store is still at DAY1: it brings it current first, never taking DAY1's result
        # from Redis; what it computes is the very result A computed for DAY2.
        c = serve(c_md, options=opts)
        c_first = c.client.post("/v1/scan", json=BODY).json()
        assert c_first["served_by"] == "computed", c_first
        done = c.wait(c_first["id"])
        assert _as_of(c, done) == str(DAY2) and done["key"] == after["key"]
        assert c.service.jobs.computations == 1

        # A fresh instance on a current store is served DAY2's result from Redis.
        d_md, _ = _market(tmp_path / "d", DAY2, redis_url=redis_server.url)
        try:
            d = serve(d_md, options=opts)
            served = d.client.post("/v1/scan", json=BODY).json()
            assert served["served_by"] == "redis" and served["key"] == after["key"]
            assert _as_of(d, served) == str(DAY2)
        finally:
            d_md.store.close()
    finally:
        for md in (a_md, c_md):
            md.store.close()


def test_running_service_picks_up_a_new_session_on_its_own(serve: Serve, tmp_path: Path) -> None:
    md, prov = _market(tmp_path / "m", DAY1)
    try:
        s = serve(md, options=ServiceOptions(refresh_interval_s=0.2, health_interval_s=0.2))
        assert s.client.get("/health").json()["store"]["last_session"] == str(DAY1)
        fetched = prov.request_counts["grouped_daily"]
        prov.advance(DAY2)
        deadline = time.monotonic() + 30
        while s.client.get("/health").json()["store"]["last_session"] != str(DAY2):
            assert time.monotonic() < deadline, "the new session was never fetched"
            time.sleep(0.1)
        assert prov.request_counts["grouped_daily"] == fetched + 1
        assert s.service.jobs.computations == 0  # no request was needed
        st = s.scan(BODY)
        assert st["source"] == "computed" and _as_of(s, st) == str(DAY2)
    finally:
        md.store.close()


def test_a_session_the_vendor_has_not_published_keeps_the_caches(serve: Serve,
                                                                 tmp_path: Path) -> None:
    """The provider names a latest session whose bars are not out yet: after an update tried
    it, the store counts as current for the refresh interval and results come from the cache
    (not one vendor attempt per request)."""
    prov = FaultyProvider({}, empty_sessions=[DAY2], n_listings=N, seed=7, epoch=EPOCH,
                          end=DAY2)
    md = make_market(tmp_path / "m", n=N, provider=prov)
    try:
        md.ensure_current()
        assert md.store.last_session() == DAY1
        s = serve(md, options=ServiceOptions(max_running_scans=1, max_queued_scans=0,
                                             max_jobs=1, refresh_interval_s=3600))
        first = s.scan(BODY)
        assert first["source"] == "computed" and _as_of(s, first) == str(DAY1)
        s.scan(OTHER)  # BODY's job leaves the job table; its result stays in memory
        tries = prov.request_counts["grouped_daily"]
        again = s.client.post("/v1/scan", json=BODY).json()
        assert again["served_by"] == "memory" and again["key"] == first["key"]
        assert prov.request_counts["grouped_daily"] == tries
    finally:
        md.store.close()
