"""Two service instances, each with its own MarketData on its own store of the same market,
sharing one real redis-server: B serves A's result without computing. And Redis down."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis
from service_support import Serve

from technic_v4.data.market import MarketData
from technic_v4.service.app import ServiceOptions
from technic_v4.testing import RedisServer, free_port, make_market

BODY = {"max_symbols": 90, "top_n": 30, "sectors": ["Financials", "Health Care",
                                                    "Information Technology"]}


def test_instance_b_serves_instance_a_result_from_redis(serve: Serve, tmp_path: Path,
                                                        redis_server: RedisServer) -> None:
    a_md = make_market(tmp_path / "a", redis_url=redis_server.url)
    b_md = make_market(tmp_path / "b", redis_url=redis_server.url)
    for md in (a_md, b_md):
        md.ensure_current()
    assert a_md.store.path != b_md.store.path
    opts = ServiceOptions(redis_prefix=f"technic-test-{uuid.uuid4().hex}:")
    try:
        a = serve(a_md, options=opts)
        b = serve(b_md, options=opts)
        ha, hb = a.client.get("/health").json(), b.client.get("/health").json()
        assert ha["redis"]["status"] == hb["redis"]["status"] == "up"
        assert ha["store"]["data_version"] == hb["store"]["data_version"]

        st_a = a.scan(BODY)
        assert st_a["state"] == "done" and st_a["source"] == "computed"
        assert a.service.jobs.computations == 1

        r = b.client.post("/v1/scan", json=BODY)
        assert r.status_code == 202
        st_b = r.json()
        assert st_b["served_by"] == "redis" and st_b["state"] == "done"
        assert st_b["key"] == st_a["key"]
        assert b.service.jobs.computations == 0
        res_a = a.client.get(st_a["links"]["results"]).json()
        res_b = b.client.get(st_b["links"]["results"]).json()
        assert res_b == res_a
        assert b.client.get(st_b["links"]["csv"]).text == a.client.get(st_a["links"]["csv"]).text
        again = b.client.post("/v1/scan", json=BODY).json()  # now local to B
        assert again["id"] == st_b["id"] and b.service.jobs.computations == 0

        raw = redis.Redis.from_url(redis_server.url).get(f"{opts.redis_prefix}result:"
                                                          f"{st_a['key']}")
        assert raw is not None and raw[:4] == b"\xff\xff\xff\xff"  # Arrow IPC, not pickle
        m = b.client.get("/metrics").text
        assert 'technic_result_cache_lookups_total{layer="redis",result="hit"} 1.0' in m
        assert 'technic_scan_requests_total{source="redis"} 1.0' in m
    finally:
        for md in (a_md, b_md):
            md.store.close()


def test_redis_down_degrades_to_this_process(serve: Serve, market: MarketData) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    s = serve(market, settings=market.settings.model_copy(update={"redis_url": dead}))
    h = s.client.get("/health").json()
    assert h["status"] == "degraded" and h["redis"]["status"] == "down"
    assert h["redis"]["url"] == dead
    st = s.scan({"max_symbols": 40})
    assert st["state"] == "done"
    assert s.client.get(st["links"]["results"]).status_code == 200
    again = s.client.post("/v1/scan", json={"max_symbols": 40}).json()
    assert again["id"] == st["id"]
    # The start-up health check found Redis down: the cache backs off instead of paying a
    # connection attempt on every scan.
    m = s.client.get("/metrics").text
    assert 'technic_redis_errors_total{op=' not in m
    assert 'technic_result_cache_lookups_total{layer="redis",result="miss"} 1.0' in m


def test_redis_url_credentials_are_not_shown(serve: Serve, market: MarketData,
                                             redis_server: RedisServer) -> None:
    url = redis_server.url.replace("redis://", "redis://user:hunter2@")
    s = serve(market, settings=market.settings.model_copy(update={"redis_url": url}))
    body = s.client.get("/health").text
    assert "hunter2" not in body and f"127.0.0.1:{redis_server.port}" in body
