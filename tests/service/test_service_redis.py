"""Two service instances, each with its own MarketData on its own store of the same market,
sharing one real redis-server: B serves A's result without computing. And Redis down."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from service_support import Serve

from technic_v4.config.scan import ScanConfig
from technic_v4.data.l3 import RedisLayer, redact_url
from technic_v4.data.market import MarketData
from technic_v4.service.app import ServiceOptions
from technic_v4.service.cache import result_key
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


BAD_META: list[Any] = [
    [1, 2],  # not an object
    {"format": 1},  # nothing else
    {"format": 1, "message": "m", "key": 5, "data_version": "v", "stats": {}},
    {"format": 1, "message": "m", "key": "k", "data_version": "v", "stats": []},
    {"format": 1, "message": "m", "key": "k", "data_version": "v",
     "stats": {"stages": [{"stage": "update"}]}},
    {"format": 1, "message": "m", "key": "k", "data_version": "v",
     "stats": {"stages": "update"}},
    {"format": 1, "message": None, "key": "k", "data_version": "v", "stats": {}},
]


def _with_meta(meta: Any) -> bytes:
    table = pa.table({"Symbol": ["AAA"], "Close": [1.0]})
    table = table.replace_schema_metadata({b"technic.result": json.dumps(meta).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _foreign_arrow() -> bytes:
    sink = pa.BufferOutputStream()
    t = pa.table({"x": [1, 2, 3]})
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return bytes(sink.getvalue().to_pybytes())


def test_malformed_cached_results_are_misses(serve: Serve, market: MarketData,
                                             redis_server: RedisServer) -> None:
    """Whatever sits under a result key in Redis (truncated, foreign, wrong metadata), the
    request is computed, never a 500."""
    prefix = f"technic-test-{uuid.uuid4().hex}:"
    s = serve(market, settings=market.settings.model_copy(update={"redis_url": redis_server.url}),
              options=ServiceOptions(redis_prefix=prefix))
    good = s.scan({"max_symbols": 30, "top_n": 3})
    raw = redis.Redis.from_url(redis_server.url)
    valid = raw.get(f"{prefix}result:{good['key']}")
    assert valid is not None
    version = s.client.get("/health").json()["store"]["data_version"]
    values = [valid[: len(valid) // 2], valid[:7], b"", b"hello", pickle.dumps({"a": 1}),
              _foreign_arrow(), *(_with_meta(m) for m in BAD_META)]
    for i, value in enumerate(values):
        body = {"max_symbols": 30, "top_n": 4 + i}
        raw.set(f"{prefix}result:{result_key(ScanConfig(**body), version)}", value)
        r = s.client.post("/v1/scan", json=body)
        assert r.status_code == 202 and r.json()["served_by"] == "computed", (i, r.text)
        st = s.wait(r.json()["id"])
        assert st["state"] == "done" and st["rows"] == 4 + i
    assert s.service.jobs.computations == 1 + len(values)


def test_malformed_l3_values_are_misses(redis_server: RedisServer) -> None:
    ns = f"t{uuid.uuid4().hex}"
    layer = RedisLayer(redis_server.url, ns)
    raw = redis.Redis.from_url(redis_server.url)
    day = dt.date(2026, 11, 20)
    panel_key = layer.panel_key(day, 50, "fp")
    panel_metas: list[dict[bytes, bytes]] = [{}, {b"n_bars": b"x", b"as_of": b"2026-11-20"},
                                              {b"n_bars": b"3", b"as_of": b"nope"},
                                              {b"n_bars": b"0", b"as_of": b"2026-11-20"}]
    bad: list[bytes] = [b"\xff\xff\xff\xff\x10", b"junk", _foreign_arrow()]
    for value in bad:
        raw.set(f"technic:{ns}:reference:{day}", value)
        raw.set(f"technic:{ns}:actions", value)
        raw.set(panel_key, value)
        raw.set(f"technic:{ns}:bars:{day}", value)
        assert layer.get_reference(day) is None
        assert layer.get_actions(day, day) is None
        assert layer.get_panel(panel_key) is None
        assert layer.get_session_tables(np.array([np.datetime64(day, "D")])) == {}
    for meta in panel_metas:
        t = pa.table({"symbol": ["A"], "sid": [1]}).replace_schema_metadata(meta)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        raw.set(panel_key, bytes(sink.getvalue().to_pybytes()))
        assert layer.get_panel(panel_key) is None
    assert layer.errors == 4 * len(bad) + len(panel_metas)


@pytest.mark.parametrize("url, secret", [
    ("redis://user:hunter2@127.0.0.1:{port}/0", "hunter2"),
    ("redis://:p@ss@hunter2@127.0.0.1:{port}/0", "ss@hunter2"),
    ("redis://127.0.0.1:{port}/0?password=hunter2", "hunter2"),
    ("rediss://admin:hunter2@127.0.0.1:{port}/0", "hunter2"),
])
def test_redis_urls_are_redacted_everywhere(url: str, secret: str, serve: Serve,
                                            tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """/health, ``technic cache stats`` (MarketData.stats) and the logs of both Redis layers,
    which log the URL when Redis fails (nothing listens on the port)."""
    port = free_port()
    url = url.format(port=port)
    caplog.set_level(logging.DEBUG)
    md = make_market(tmp_path / "m", n=60, redis_url=url)
    try:
        md.ensure_current()
        s = serve(md, settings=md.settings)
        health = s.client.get("/health").text
        st = s.scan({"max_symbols": 20})
        assert st["state"] == "done"
        stats = json.dumps(md.stats(), default=str)
        for text in (health, stats, caplog.text):
            assert secret not in text and "hunter2" not in text
        logged = [r.getMessage() for r in caplog.records
                  if r.name.startswith("technic_v4") and f"127.0.0.1:{port}" in r.getMessage()]
        assert any("L3" in m for m in logged) and any("serving from this process" in m
                                                      for m in logged)
        assert f"127.0.0.1:{port}" in json.loads(health)["redis"]["url"]
    finally:
        md.store.close()


def test_redact_url_forms() -> None:
    assert redact_url("redis://u:secret@h:6380/2") == "redis://***@h:6380/2"
    assert redact_url("redis://:p@ss@w0rd@h/0") == "redis://***@h/0"
    assert redact_url("redis://h:6379/0?password=sec&db=1") == \
        "redis://h:6379/0?password=***&db=1"
    assert redact_url("unix://:pw@/tmp/r.sock?db=0") == "unix://***@/tmp/r.sock?db=0"
    assert redact_url("unix:///tmp/r.sock?password=x") == "unix:///tmp/r.sock?password=***"
    assert redact_url("redis://[::1]:6379/0") == "redis://[::1]:6379/0"
    assert redact_url("redis://h:6379/0?password=a#b") == "redis://h:6379/0?password=***#***"


@pytest.mark.parametrize("url", [
    "redis://u:pa?ss@h/0", "redis://u:pa#ss@h/0", "redis://:a/b@h/0", "redis://u:pa:ss@h:6379/0",
    "rediss://u:p@?a/s#s@h/0", "unix://u:pa?ss@/tmp/r.sock?db=0"])
def test_redact_url_cuts_userinfo_at_the_last_at(url: str) -> None:
    """An unescaped '/', '?', '#' or ':' in a password moves a URL parser's host; the userinfo
    is cut at the last '@' before parsing, so no fragment of the password survives."""
    scheme, _, rest = url.partition("://")
    assert redact_url(url) == f"{scheme}://***@{rest.rpartition('@')[2]}"


def test_hung_redis_never_holds_health_or_scans(serve: Serve, market: MarketData) -> None:
    """A SIGSTOPped redis-server accepts connections and never answers: /health answers from
    its cached status (the 2 s client timeout is a hang check), scans work, and the results
    cache backs off after the first timeout instead of paying one per request."""
    with RedisServer() as rs:
        settings = market.settings.model_copy(update={"redis_url": rs.url})
        s = serve(market, settings=settings, options=ServiceOptions(
            health_interval_s=0.2, redis_prefix=f"technic-test-{uuid.uuid4().hex}:"))
        assert s.client.get("/health").json()["redis"]["status"] == "up"
        pid = rs._proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            with httpx.Client(base_url=s.url, timeout=2) as quick:
                for _ in range(3):
                    assert quick.get("/health").status_code == 200
                for i in range(3):
                    r = quick.post("/v1/scan", json={"max_symbols": 20 + i})
                    assert r.status_code == 202
                    assert s.wait(r.json()["id"])["state"] == "done"
                deadline = time.monotonic() + 20
                while quick.get("/health").json()["redis"]["status"] != "down":
                    assert time.monotonic() < deadline, "/health never reported Redis down"
                    time.sleep(0.1)
                h = quick.get("/health").json()
                assert h["status"] == "degraded" and "Timeout" in h["redis"]["error"]
            errors = [f for f in text_string_to_metric_families(s.client.get("/metrics").text)
                      if f.name == "technic_redis_errors"]
            n = sum(x.value for f in errors for x in f.samples
                    if x.name.endswith("_total") and x.labels["op"] in ("get", "set"))
            assert n <= 1, n  # 3 scans: at most the first call timed out, then back-off
        finally:
            os.kill(pid, signal.SIGCONT)
