"""The HTTP API over real HTTP: a real uvicorn on a loopback port, a real small market."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import io
import json
import logging
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_support import Gate, Serve

from technic_v4 import __version__, formats, pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import COLUMNS, STAGES
from technic_v4.service import queries
from technic_v4.service.app import ServiceOptions
from technic_v4.service.loadcheck import run_load
from technic_v4.service.results import Outcome
from technic_v4.testing import END

CFG = {"max_symbols": 120, "top_n": 25}


def _python_frame(market: MarketData, body: dict[str, Any]) -> pd.DataFrame:
    return pipeline.scan(ScanConfig(**body), market).frame


def _assert_rows_equal(rows: list[dict[str, Any]], frame: pd.DataFrame) -> None:
    """JSON rows equal the Python API's frame, cell by cell, floats bit for bit."""
    assert len(rows) == len(frame)
    for i, row in enumerate(rows):
        assert list(row) == list(COLUMNS)
        for c in COLUMNS:
            v, f = row[c], frame[c].iloc[i]
            if isinstance(f, pd.Timestamp):
                assert v == f.date().isoformat(), (i, c)
            elif pd.isna(f):
                assert v is None, (i, c, v)
            elif isinstance(f, float | np.floating):
                assert isinstance(v, float | int) and float(v) == float(f), (i, c, v, f)
            elif isinstance(f, int | np.integer):
                assert v == int(f), (i, c)
            else:
                assert v == str(f), (i, c)


# -- service -------------------------------------------------------------------------------
def test_health_and_version(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    h = s.client.get("/health")
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok"
    st = body["store"]
    assert st["state"] == "ready"
    assert "path" not in st and str(market.settings.data_dir) not in h.text  # no key: no paths
    assert st["last_session"] == str(END)
    assert st["symbols"] == market.store.status()["symbols"] > 0
    assert "redis" not in body  # not configured
    v = s.client.get("/version").json()
    assert v["version"] == __version__ and v["api"] == "v1"
    assert {"fastapi", "uvicorn", "duckdb"} <= set(v["packages"])
    r = s.client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    o = s.client.get("/v1/options").json()
    assert "Information Technology" in o["sectors"] and o["stages"] == list(STAGES)
    keyed = serve(market, settings=market.settings.model_copy(update={"api_key": "k-1"}))
    mine = keyed.client.get("/health", headers={"X-API-Key": "k-1"}).json()
    assert mine["store"]["path"] == str(market.store.path)
    for headers in ({}, {"X-API-Key": "wrong"}):
        other = keyed.client.get("/health", headers=headers)
        assert other.status_code == 200 and str(market.settings.data_dir) not in other.text


# -- scan lifecycle ------------------------------------------------------------------------
def test_scan_lifecycle_progress_json_and_csv_equal_python_api(serve: Serve,
                                                               market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    r = s.client.post("/v1/scan", json=CFG)
    assert r.status_code == 202
    job = r.json()
    assert job["served_by"] == "computed" and r.headers["location"] == f"/v1/scan/{job['id']}"
    gate.wait_entered()  # the worker sits in the first progress callback (update ended)
    st = s.client.get(f"/v1/scan/{job['id']}").json()
    assert st["state"] == "running"
    p = st["progress"]
    assert p["stage"] == "universe" and p["stage_index"] == 2 and p["stages"] == len(STAGES)
    assert [c["stage"] for c in p["completed"]] == ["update"]
    assert 0 < p["percent"] < 100
    assert p["eta_seconds"] is None  # no scan measured yet in this process
    r = s.client.get(f"/v1/scan/{job['id']}/results")
    assert r.status_code == 409 and r.json()["state"] == "running"
    gate.release.set()
    st = s.wait(job["id"])
    assert st["state"] == "done" and st["progress"]["percent"] == 100
    assert [c["stage"] for c in st["progress"]["completed"]] == list(STAGES)
    assert st["rows"] == 25 and st["message"].startswith("Scanned")

    expected = _python_frame(market, CFG)
    res = s.client.get(st["links"]["results"])
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    body = res.json()
    assert body["columns"] == list(COLUMNS) and body["count"] == 25
    assert body["message"] == st["message"]
    assert [x["stage"] for x in body["stats"]["stages"]] == list(STAGES)
    _assert_rows_equal(body["rows"], expected)
    for c in ("Entry", "Stop", "Target"):
        assert all(isinstance(row[c], float) for row in body["rows"])

    for csv in (s.client.get(st["links"]["csv"]),
                s.client.get(st["links"]["results"], headers={"Accept": "text/csv"})):
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.text == formats.to_csv(expected)  # what `technic scan --format csv` writes
        back = pd.read_csv(io.StringIO(csv.text))
        assert list(back.columns) == list(COLUMNS)
        np.testing.assert_allclose(back["TechRating"].to_numpy(),
                                   expected["TechRating"].to_numpy(), rtol=1e-9)
    r = s.client.get(st["links"]["results"], params={"format": "xml"})
    assert r.status_code == 422 and r.json()["field"] == "format" and "json, csv" in r.text
    etag = res.headers["etag"]
    assert s.client.get(st["links"]["results"],
                        headers={"If-None-Match": etag}).status_code == 304


def test_eta_comes_from_measured_throughput(serve: Serve, market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    gate.release.set()
    s.scan({"max_symbols": 60})  # measured: every stage's seconds per item
    gate.release.clear()
    gate.entered.clear()
    r = s.client.post("/v1/scan", json={"max_symbols": 61})
    gate.wait_entered()
    p = s.client.get(f"/v1/scan/{r.json()['id']}").json()["progress"]
    assert p["eta_seconds"] is not None and p["eta_seconds"] > 0  # work remains
    gate.release.set()
    assert s.wait(r.json()["id"])["state"] == "done"


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field", "words"), [
    ({"sectors": ["Tech"]}, "sectors", ["'Tech'", "Information Technology", "Utilities"]),
    ({"max_symbols": -1}, "max_symbols", ["greater than or equal to 0"]),
    ({"max_symbol": 5}, "max_symbol", ["unknown ScanConfig field", "max_symbols", "top_n"]),
    ({"types": ["Bond"]}, "types", ["'Bond'", "Common Stock", "ETF"]),
    ({"top_n": "ten"}, "top_n", ["integer"]),
    ({"as_of_date": "2001-01-01"}, "as_of_date", ["before the first stored session"]),
    ([1, 2], "body", ["JSON object", "max_symbols"]),
])
def test_bad_body_is_422_naming_field_and_valid_values(serve: Serve, market: MarketData,
                                                       body: Any, field: str,
                                                       words: list[str]) -> None:
    s = serve(market)
    r = s.client.post("/v1/scan", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"] == "invalid_request" and err["field"] == field
    assert err["message"].startswith(f"{field}:")
    for w in words:
        assert w in err["message"]
    assert s.service.jobs.computations == 0


def test_bad_json_media_type_and_query(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    r = s.client.post("/v1/scan", content=b"{not json", headers={"Content-Type":
                                                                  "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = s.client.post("/v1/scan", content=b'{"min_price": NaN}',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = s.client.post("/v1/scan", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    r = s.client.get("/v1/symbol/AAA", params={"days": 5})
    assert r.status_code == 422 and r.json()["field"] == "days"
    assert s.client.get("/v1/scan/nope").status_code == 404


def test_body_size_limit(serve: Serve, market: MarketData) -> None:
    s = serve(market, options=ServiceOptions(max_body_bytes=1024))
    big = json.dumps({"symbols": ["A" * 10] * 200}).encode()
    r = s.client.post("/v1/scan", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1024" in r.json()["message"]

    def chunks() -> Any:  # no Content-Length: counted while it streams
        for i in range(0, len(big), 256):
            yield big[i:i + 256]

    r = s.client.post("/v1/scan", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert s.service.jobs.computations == 0


# -- security ------------------------------------------------------------------------------
def test_api_key(serve: Serve, market: MarketData, caplog: pytest.LogCaptureFixture) -> None:
    key = "k3y-Zq81-never-logged"
    caplog.set_level(logging.DEBUG)
    s = serve(market, settings=market.settings.model_copy(update={"api_key": key}))
    c = s.client
    assert c.get("/health").status_code == 200  # open
    assert c.get("/").status_code == 200  # the page shell (no data) asks for the key
    for method, path in (("GET", "/version"), ("GET", "/metrics"), ("POST", "/v1/scan"),
                         ("GET", "/v1/universe"), ("GET", "/v1/symbol/SPY"),
                         ("GET", "/v1/scan/x"), ("DELETE", "/v1/scan/x"),
                         ("GET", "/openapi.json")):
        r = c.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 401, (method, path)
        assert "X-API-Key" in r.json()["message"]
        r = c.request(method, path, headers={"X-API-Key": key[:-1] + "X"})
        assert r.status_code == 401 and r.json()["message"] == "invalid X-API-Key"
    ok = {"X-API-Key": key}
    assert c.get("/version", headers=ok).status_code == 200
    assert c.get("/metrics", headers=ok).status_code == 200
    st = s.scan({"max_symbols": 30}, **ok)
    assert st["state"] == "done"
    assert c.get(st["links"]["results"], headers=ok).status_code == 200
    assert c.get(st["links"]["results"]).status_code == 401
    assert key not in caplog.text and key[:-1] + "X" not in caplog.text


def test_host_check(serve: Serve, market: MarketData) -> None:
    s = serve(market, options=ServiceOptions(allowed_hosts=("127.0.0.1", "localhost")))
    assert s.client.get("/health").status_code == 200
    r = s.client.get("/health", headers={"Host": "evil.example:8502"})
    assert r.status_code == 421
    r = s.client.get("/", headers={"Host": "localhost:8502"})
    assert r.status_code == 200
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


# -- cancel, sharing, limits, retention ----------------------------------------------------
def test_cancel_running_scan(serve: Serve, market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    job = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    r = s.client.delete(f"/v1/scan/{job['id']}")
    assert r.status_code == 202
    gate.release.set()  # the pipeline polls cancel right after this callback
    st = s.wait(job["id"])
    assert st["state"] == "cancelled"
    assert [c["stage"] for c in st["progress"]["completed"]] == ["update"]
    r = s.client.get(f"/v1/scan/{job['id']}/results")
    assert r.status_code == 409 and r.json()["state"] == "cancelled"
    assert s.client.delete(f"/v1/scan/{job['id']}").status_code == 409
    # A cancelled scan is not a result: the same request computes anew.
    again = s.client.post("/v1/scan", json=CFG).json()
    assert again["id"] != job["id"] and again["served_by"] == "computed"
    assert s.wait(again["id"])["state"] == "done"


def test_cancel_queued_scan(serve: Serve, market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate, options=ServiceOptions(max_running_scans=1))
    first = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    queued = s.client.post("/v1/scan", json={"max_symbols": 50}).json()
    assert queued["state"] == "queued"
    r = s.client.delete(f"/v1/scan/{queued['id']}")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    gate.release.set()
    assert s.wait(first["id"])["state"] == "done"
    assert s.service.jobs.computations == 1


def test_identical_concurrent_requests_share_one_computation(serve: Serve,
                                                             market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    first = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()  # the computation is in flight while the others arrive
    same = dict(CFG, sectors=["Energy", "health care"])
    s.client.post("/v1/scan", json=same)  # a second computation ...
    reordered = dict(CFG, sectors=["Health Care", "energy"])  # ... which this one shares
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda b: s.client.post("/v1/scan", json=b), [CFG] * 8 + [reordered]))
    assert all(r.status_code == 202 for r in rs)
    assert {r.json()["id"] for r in rs[:8]} == {first["id"]}
    assert all(r.json()["served_by"] == "shared" for r in rs)
    gate.release.set()
    st = s.wait(first["id"])
    assert st["state"] == "done" and st["requests"] == 9
    assert s.service.jobs.computations == 2
    later = s.client.post("/v1/scan", json=CFG).json()  # done and retained: same job
    assert later["id"] == first["id"] and later["served_by"] == "shared"
    assert s.service.jobs.computations == 2


def test_concurrency_bound_429_with_retry_after(serve: Serve, market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate, options=ServiceOptions(max_running_scans=1,
                                                        max_queued_scans=0))
    first = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    r = s.client.post("/v1/scan", json={"max_symbols": 40})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "too_many_scans"
    assert s.client.post("/v1/scan", json=CFG).status_code == 202  # identical: shares
    gate.release.set()
    assert s.wait(first["id"])["state"] == "done"
    r = s.client.post("/v1/scan", json={"max_symbols": 40})
    assert r.status_code == 202
    assert s.wait(r.json()["id"])["state"] == "done"


def test_job_retention_evicts_oldest_finished(serve: Serve, market: MarketData) -> None:
    s = serve(market, options=ServiceOptions(max_running_scans=1, max_queued_scans=1,
                                             max_jobs=2))
    ids = [s.scan({"max_symbols": 20 + i})["id"] for i in range(3)]
    assert s.client.get(f"/v1/scan/{ids[0]}").status_code == 404
    assert "expired" in s.client.get(f"/v1/scan/{ids[0]}").json()["message"]
    for i in ids[1:]:
        assert s.client.get(f"/v1/scan/{i}").status_code == 200
    assert len(s.client.get("/v1/scans").json()["scans"]) == 2
    # The job is gone but its result is cached: served without computing.
    r = s.client.post("/v1/scan", json={"max_symbols": 20}).json()
    assert r["served_by"] == "memory" and r["state"] == "done" and r["id"] != ids[0]
    assert s.service.jobs.computations == 3


def test_job_retention_is_bounded_by_result_memory(serve: Serve, market: MarketData) -> None:
    s = serve(market, options=ServiceOptions(max_result_mb=0))  # keep only the newest result
    first = s.scan({"max_symbols": 30})
    second = s.scan({"max_symbols": 31})
    assert s.client.get(first["links"]["self"]).status_code == 404
    assert s.client.get(second["links"]["results"]).status_code == 200


# -- events --------------------------------------------------------------------------------
def _events(lines: Iterator[str]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    event, data = None, []
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and event is not None:
            out.append((event, json.loads("\n".join(data))))
            event, data = None, []
    return out


def test_sse_delivers_progress_then_done(serve: Serve, market: MarketData) -> None:
    gate = Gate()
    s = serve(market, hook=gate)
    job = s.client.post("/v1/scan", json=CFG).json()
    gate.wait_entered()
    with s.client.stream("GET", job["links"]["events"]) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        first = [next(lines) for _ in range(3)]  # id, event, data of the current state
        assert first[1] == "event: progress"
        assert json.loads(first[2][5:])["state"] == "running"
        gate.release.set()
        rest = _events(lines)
    names = [e for e, _ in rest]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"} and len(names) >= 2
    done_counts = [len(p["progress"]["completed"]) for _, p in rest]
    assert done_counts == sorted(done_counts) and done_counts[-1] == len(STAGES)
    assert rest[-1][1]["rows"] == 25
    # A finished job's stream is its final event only.
    with s.client.stream("GET", job["links"]["events"]) as resp:
        assert [e for e, _ in _events(resp.iter_lines())] == ["done"]


# -- data routes ---------------------------------------------------------------------------
def test_symbol_history_indicators_and_scan_row(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    st = s.scan(CFG)
    row = s.client.get(st["links"]["results"]).json()["rows"][0]
    sym = row["Symbol"]
    r = s.client.get(f"/v1/symbol/{sym.lower()}")
    assert r.status_code == 200
    d = r.json()
    assert d["symbol"] == sym and d["as_of"] == str(END) and d["bars"] == 300
    h = d["history"]
    assert set(h) == {"date", "open", "high", "low", "close", "volume"}
    assert len(h["date"]) == 300 and h["date"][-1] == row["LastDate"]
    with market.request():
        panel = market.panel(END, 300)
        n_all = int(market.panel(END, 300 + 199).n_bars[panel.symbols == sym][0])
    i = int(np.flatnonzero(panel.symbols == sym)[0])
    np.testing.assert_array_equal(np.array(h["close"]), panel.close[i])
    np.testing.assert_array_equal(np.array(h["volume"]), panel.volume[i])
    ind = d["indicators"]
    for k, period in (("SMA20", 20), ("SMA50", 50), ("SMA200", 200), ("BBUpper", 20),
                      ("BBMiddle", 20), ("BBLower", 20)):
        assert len(ind[k]) == 300
        # Bars before the window warm the series up: defined wherever `period` bars exist.
        assert sum(v is not None for v in ind[k]) == min(300, n_all - period + 1), k
        assert math.isclose(ind[k][-1], row[k], rel_tol=1e-9), k
    assert d["scan"]["id"] == st["id"] and d["scan"]["row"] == row
    assert (d["scan"]["row"]["Entry"], d["scan"]["row"]["Stop"]) == (row["Entry"], row["Stop"])
    r = s.client.get(f"/v1/symbol/{sym}", params={"days": 40, "as_of": "2026-10-01"})
    assert r.json()["bars"] == 40 and r.json()["history"]["date"][-1] <= "2026-10-01"
    r = s.client.get("/v1/symbol/ZZZZZZ")
    assert r.status_code == 404
    assert "unknown ticker 'ZZZZZZ'" in r.json()["message"]
    assert s.client.get("/v1/symbol/DROP;TABLE").status_code == 422


def test_universe_counts(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    r = s.client.get("/v1/universe")
    assert r.status_code == 200
    u = r.json()
    stats = pipeline.scan(ScanConfig(), market).stats
    stages = {x["stage"]: x for x in stats["stages"]}
    assert u["as_of"] == stats["as_of"]
    ref = market.reference()
    # Listed by then and not delisted before it (a delisted listing trades on its last day).
    listed = ref[(pd.to_datetime(ref["ListDate"]).dt.date <= END)
                 & ~(ref["Delisted"] < pd.Timestamp(END))]
    assert (ref["Delisted"] < pd.Timestamp(END)).any()
    assert u["listings"] == len(listed) == stages["universe"]["out"]
    assert sum(u["by_sector"].values()) == sum(u["by_type"].values()) == u["listings"]
    assert u["by_type"]["Common Stock"] == int((listed["Type"] == "Common Stock").sum())
    pre = stages["pre_screen"]
    assert u["pre_screen"] == {"in": pre["in"], "passed": pre["out"], "dropped": pre["dropped"]}
    assert u["pre_screen"]["in"] == u["pre_screen"]["passed"] + sum(
        u["pre_screen"]["dropped"].values())
    # A second call reuses the default scan.
    again = s.client.get("/v1/universe").json()
    assert again["scan"]["id"] == u["scan"]["id"] and s.service.jobs.computations == 1


def test_metrics_after_scan(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    s.scan(CFG)
    s.client.post("/v1/scan", json=CFG)  # shared
    r = s.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for fam in text_string_to_metric_families(r.text) for x in fam.samples}

    def val(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert val("technic_scans_total", outcome="done") == 1
    assert val("technic_scans_total", outcome="cancelled") == 0
    assert val("technic_scan_requests_total", source="computed") == 1
    assert val("technic_scan_requests_total", source="shared") == 1
    for stage in STAGES:
        assert val("technic_scan_stage_seconds_count", stage=stage) == 1
    assert val("technic_scan_duration_seconds_count") == 1
    assert val("technic_vendor_requests_total", endpoint="grouped_daily") >= 1
    assert val("technic_cache_lookups_total", layer="l1_memory", result="hit") == \
        market.memory.hits
    assert val("technic_cache_bars_served_total", layer="memory") + val(
        "technic_cache_bars_served_total", layer="store") > 0
    assert val("technic_result_cache_lookups_total", layer="memory", result="miss") == 1
    assert val("technic_store_size_bytes") == market.store.size_bytes() > 0
    assert val("technic_active_jobs", state="running") == 0
    assert val("technic_jobs_retained") == 1


def test_loadcheck_small(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    st = s.scan(CFG)
    rep = run_load(s.url, st["links"]["results"], requests=200, concurrency=20)
    assert rep.errors == 0 and rep.requests == 200, rep.error_samples
    assert rep.bytes_per_response == len(s.client.get(st["links"]["results"]).content)


def test_point_in_time_scan(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    body = {"max_symbols": 60, "as_of_date": "2026-07-04"}  # a holiday: the session before
    st = s.scan(body)
    res = s.client.get(st["links"]["results"]).json()
    assert res["as_of"] == str(dt.date(2026, 7, 2))
    _assert_rows_equal(res["rows"], _python_frame(market, body))


def test_docs_are_self_hosted_and_declare_the_api_key(serve: Serve, market: MarketData) -> None:
    s = serve(market, settings=market.settings.model_copy(update={"api_key": "k-2"}))
    r = s.client.get("/docs")  # the shell is open; it asks for the key to read the spec
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    srcs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert "/docs-assets/swagger-ui-bundle.js" in srcs and "/static/docs.js" in srcs
    assert all(u.startswith("/") for u in srcs) and "<script>" not in r.text  # no inline code
    for u in srcs:
        assert s.client.get(u).status_code == 200, u
    assert s.client.get("/openapi.json").status_code == 401
    spec = s.client.get("/openapi.json", headers={"X-API-Key": "k-2"}).json()
    scheme = spec["components"]["securitySchemes"]["APIKeyHeader"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert spec["paths"]["/v1/scan"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_universe_counts_listings_without_a_list_date(market: MarketData) -> None:
    """As the pipeline's universe stage does: only a listing dated after the session is out."""
    ref = market.reference().head(6).copy()
    ref["ListDate"] = pd.to_datetime(["2020-01-02", None, "2026-12-01", None, "2026-11-20",
                                      "2026-11-23"])
    frame = pd.DataFrame({"Symbol": ref["Symbol"]})
    stages = [{"stage": "pre_screen", "in": 4, "out": 3, "seconds": 0.1, "dropped": {"x": 1}}]
    out = Outcome(frame, "m", {"as_of": "2026-11-20", "stages": stages}, "k", "v")
    u = queries.universe_summary(ref, out)
    assert u["listings"] == 4 and sum(u["by_type"].values()) == 4
    assert u["pre_screen"] == {"in": 4, "passed": 3, "dropped": {"x": 1}}
