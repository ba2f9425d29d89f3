"""L3 (Redis) against a real redis-server: shared fills, shared panels, Redis down or slow."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import redis

from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import scan
from technic_v4.testing import RedisServer, free_port, make_market

EPOCH = dt.date(2025, 9, 2)
N = 80
CFG = ScanConfig(min_history=30, lookback_days=60)


def _market(path: Path, url: str) -> MarketData:
    return make_market(path, n=N, epoch=EPOCH, redis_url=url)


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


def test_second_instance_fills_from_redis_with_zero_vendor_requests(
        tmp_path: Path, fresh_redis: RedisServer) -> None:
    a = _market(tmp_path / "a", fresh_redis.url)
    with a.request() as ca:
        ra = scan(CFG, a)
    assert ca.api_calls["grouped_daily"] == len(a.store.stored_sessions()) > 0
    assert ca.served["vendor"] > 0 and ca.served["redis"] == 0
    a.store.close()
    # Instance B: a different process with its own empty store.
    code = r"""
import json, sys, datetime as dt
from pathlib import Path
from technic_v4.testing import make_market
from technic_v4.pipeline import scan
from technic_v4.config.scan import ScanConfig
md = make_market(Path(sys.argv[1]), n=80, epoch=dt.date(2025, 9, 2), redis_url=sys.argv[2])
res = scan(ScanConfig(min_history=30, lookback_days=60), md)
res.frame.to_csv(sys.argv[3], index=False)
print(json.dumps({"counters": res.stats["counters"], "api": md.provider.request_counts}))
"""
    out = tmp_path / "b.csv"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b"), fresh_redis.url,
                        str(out)], capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["api"] == {"reference": 0, "grouped_daily": 0}
    assert got["counters"]["api_calls_total"] == 0
    assert got["counters"]["served_by"]["redis"] > 0
    assert got["counters"]["served_by"]["vendor"] == 0
    assert got["counters"]["hit_rate"] == 100.0
    b = pd.read_csv(out)
    a_frame = pd.read_csv(pd.io.common.StringIO(ra.frame.to_csv(index=False)))
    pd.testing.assert_frame_equal(a_frame, b)


def test_warm_store_cold_memory_gets_the_panel_from_redis(tmp_path: Path,
                                                          fresh_redis: RedisServer) -> None:
    a = _market(tmp_path / "a", fresh_redis.url)
    first = scan(CFG, a).frame
    a.clear_memory()
    with a.request() as c:
        again = scan(CFG, a).frame
    assert c.served["redis"] == c.requested > 0
    assert c.served["store"] == 0
    pd.testing.assert_frame_equal(first, again)
    a.store.close()


def test_values_are_arrow_never_pickle(tmp_path: Path, fresh_redis: RedisServer) -> None:
    a = _market(tmp_path / "a", fresh_redis.url)
    scan(CFG, a)
    r = redis.Redis.from_url(fresh_redis.url)
    keys = list(r.scan_iter(match="technic:*"))
    kinds = {k.decode().split(":")[2] for k in keys}
    assert kinds == {"bars", "actions", "reference", "panel"}
    for k in keys:
        v = r.get(k)
        assert v is not None and not v.startswith(b"\x80")  # pickle's protocol marker
        pa.ipc.open_stream(pa.py_buffer(v)).read_all()  # parses as Arrow IPC
    a.store.close()


def test_redis_down_warns_once_and_scans_locally(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    md = _market(tmp_path, url)
    with caplog.at_level(logging.WARNING, logger="technic_v4.data.l3"):
        res = scan(CFG, md)
        res2 = scan(CFG, md)
    assert len(res.frame) > 0
    pd.testing.assert_frame_equal(res.frame, res2.frame)
    warnings = [r for r in caplog.records if "Redis L3" in r.getMessage()]
    assert len(warnings) == 1
    stats = md.stats()["redis"]
    assert stats["errors"] >= 1 and stats["available"] is False
    assert "redis://127.0.0.1" in stats["url"]
    md.store.close()


def test_redis_that_never_answers_is_a_timeout_not_a_hang(tmp_path: Path) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)  # accept, then never answer
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        md = _market(tmp_path, f"redis://127.0.0.1:{port}/0")
        res = scan(CFG, md)
        assert len(res.frame) > 0
        assert md.stats()["redis"]["errors"] >= 1
        md.store.close()
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


def test_redis_back_after_a_flap(tmp_path: Path) -> None:
    port = free_port()
    with RedisServer(port) as first:
        md = _market(tmp_path / "a", first.url)
        assert md.l3 is not None
        md.l3.cooldown_s = 0.0
        scan(CFG, md)
    # Redis gone: the next scan still works (from memory and store) and counts the error.
    md.clear_memory()
    res = scan(CFG, md)
    assert len(res.frame) > 0 and md.l3.errors >= 1
    with RedisServer(port):
        # Back: the layer is used again (empty server: a miss, then a write).
        md.clear_memory()
        before = md.l3.bytes_written
        scan(CFG, md)
        assert md.l3.bytes_written > before
    md.store.close()


def test_clear_removes_only_this_dataset(tmp_path: Path, fresh_redis: RedisServer) -> None:
    a = _market(tmp_path / "a", fresh_redis.url)
    scan(CFG, a)
    r = redis.Redis.from_url(fresh_redis.url)
    r.set("other:key", b"keep")
    assert a.l3 is not None
    n = a.l3.clear()
    assert n > 0
    assert list(r.scan_iter(match="technic:*")) == []
    assert r.get("other:key") == b"keep"
    a.store.close()


def test_a_corrupt_value_is_a_miss_not_a_failure(tmp_path: Path,
                                                 fresh_redis: RedisServer) -> None:
    a = _market(tmp_path / "a", fresh_redis.url)
    first = scan(CFG, a).frame
    r = redis.Redis.from_url(fresh_redis.url)
    for k in r.scan_iter(match="technic:*"):
        r.set(k, b"not arrow at all")
    a.clear_memory()
    again = scan(CFG, a).frame  # the panel value is garbage: rebuilt from the store
    pd.testing.assert_frame_equal(first, again)
    assert a.l3 is not None and a.l3.errors >= 1
    b = _market(tmp_path / "b", fresh_redis.url)  # every session value is garbage
    from_vendor = scan(CFG, b)
    assert from_vendor.stats["counters"]["served_by"]["vendor"] > 0
    pd.testing.assert_frame_equal(first, from_vendor.frame)
    a.store.close()
    b.store.close()
