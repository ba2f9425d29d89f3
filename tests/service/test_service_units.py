"""The service's parts on their own: progress/ETA arithmetic, result encodings, config parsing,
and ``technic serve`` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from technic_v4 import formats, pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import STAGES
from technic_v4.service.app import ApiError, parse_config
from technic_v4.service.cache import canonical_config, result_key
from technic_v4.service.progress import Progress, Throughput
from technic_v4.service.results import Outcome
from technic_v4.testing import free_port


def _stages(seconds: dict[str, float], items: int) -> list[dict[str, object]]:
    return [{"stage": s, "in": items, "out": items, "seconds": seconds.get(s, 0.0),
             "dropped": {}} for s in STAGES]


def test_progress_stages_percent_and_eta() -> None:
    model = Throughput()
    p = Progress(model)
    p.start(now=100.0)
    assert p.tick("update", 0, 0, now=100.5)  # stage ended
    snap = p.snapshot(now=100.5)
    assert snap["stage"] == "universe" and snap["stage_index"] == 2
    assert snap["eta_seconds"] is None  # nothing measured yet
    assert snap["percent"] == pytest.approx(100 / len(STAGES), abs=0.1)
    for s in ("universe", "smart_filter", "max_symbols", "pre_screen"):
        p.tick(s, 100, 100, now=101.0)
    # Indicators report chunks: 25 of 100 in 1 s -> 3 s left in this stage; later stages
    # unmeasured -> no ETA yet, percent from stages.
    assert not p.tick("indicators", 25, 100, now=102.0)
    snap = p.snapshot(now=102.0)
    assert snap["stage"] == "indicators" and (snap["done"], snap["total"]) == (25, 100)
    assert snap["eta_seconds"] is None
    assert snap["percent"] == pytest.approx(100 * 5.25 / len(STAGES), abs=0.1)

    # Once a scan measured 0.01 s per item in scores, plans and output, the ETA adds them;
    # the time-based percent (2 s of 8) is below the one shown already: it never goes back.
    model.observe(_stages({"scores": 1.0, "plans": 1.0, "output": 1.0,
                           "indicators": 4.0}, items=100))
    before = snap["percent"]
    snap = p.snapshot(now=102.0)
    assert snap["eta_seconds"] == pytest.approx(3.0 + 3 * 1.0)
    assert snap["percent"] == before
    p.tick("indicators", 100, 100, now=105.0)
    snap = p.snapshot(now=107.0)  # scores measured at 1 s: 0 left; plans, output: 2 s
    assert snap["stage"] == "scores" and snap["eta_seconds"] == pytest.approx(2.0)
    assert snap["percent"] == pytest.approx(100 * 7.0 / 9.0, abs=0.1)
    p.finish(_stages({"indicators": 3.0}, 100))
    snap = p.snapshot()
    assert snap["percent"] == 100 and snap["stage"] is None and snap["eta_seconds"] is None
    assert p.snapshot(now=1e9)["elapsed_seconds"] == snap["elapsed_seconds"]  # frozen
    assert [c["stage"] for c in snap["completed"]] == list(STAGES)


def test_throughput_is_an_ewma_per_item() -> None:
    m = Throughput(alpha=0.5)
    assert m.expect("scores", 10) is None
    m.observe([{"stage": "scores", "in": 100, "out": 100, "seconds": 1.0}])
    m.observe([{"stage": "scores", "in": 100, "out": 100, "seconds": 3.0}])
    assert m.expect("scores", 50) == pytest.approx(0.02 * 50)
    assert m.expect("scores", None) == pytest.approx(2.0)


def test_outcome_arrow_round_trip_is_exact(small_market: MarketData) -> None:
    res = pipeline.scan(ScanConfig(max_symbols=80), small_market)
    out = Outcome(res.frame, res.message, res.stats, "k" * 64, "v1")
    back = Outcome.from_arrow(out.to_arrow())
    pd.testing.assert_frame_equal(back.frame, res.frame)
    assert back.message == res.message and back.key == out.key
    assert back.json_bytes() == out.json_bytes()
    assert back.csv_bytes() == out.csv_bytes() == formats.to_csv(res.frame).encode()
    with pytest.raises(ValueError, match="Arrow IPC"):
        Outcome.from_arrow(b"\x80\x04not arrow")
    with pytest.raises(ValueError, match=r"technic\.result"):
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        t = pa.table({"x": [1]})
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        Outcome.from_arrow(sink.getvalue().to_pybytes())


def test_result_key_ignores_order_of_set_fields_only() -> None:
    a = ScanConfig(sectors=["Energy", "Utilities"], top_n=5)
    b = ScanConfig(sectors=["utilities", "energy"], top_n=5)
    assert canonical_config(a) == canonical_config(b)
    assert result_key(a, "d1") == result_key(b, "d1")
    assert result_key(a, "d1") != result_key(a, "d2")
    assert result_key(a, "d1") != result_key(ScanConfig(sectors=["Energy"], top_n=5), "d1")


def test_parse_config() -> None:
    assert parse_config(b"") == ScanConfig()
    assert parse_config(b'{"max_symbols": 5}') == ScanConfig(max_symbols=5)
    with pytest.raises(ApiError) as e:
        parse_config(b'{"sectors": "Tech"}')
    assert e.value.status == 422 and e.value.field == "sectors"
    with pytest.raises(ApiError) as e:
        parse_config(b'{"min_price": Infinity}')
    assert e.value.field == "body"
    with pytest.raises(ApiError):
        parse_config(b"[" * 100_000)


def test_technic_serve_process(tmp_path: Path) -> None:
    """``technic serve`` as a user runs it: loopback default, its own store filled at start-up,
    Host check on."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHNIC_")}
    env.update({"TECHNIC_DATA_DIR": str(tmp_path), "TECHNIC_SYNTHETIC_LISTINGS": "60",
                "TECHNIC_SYNTHETIC_EPOCH": "2025-06-02", "TECHNIC_SYNTHETIC_END": "2026-11-20",
                "TECHNIC_PROGRESS": "false"})
    exe = Path(sys.executable).with_name("technic")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--max-scans", "1"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # uvicorn says when it listens
            if "Uvicorn running on" in line:
                assert f"http://127.0.0.1:{port}" in line
                break
        else:
            pytest.fail(f"technic serve exited with {proc.wait()}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            assert c.get("/health").json()["version"]
            assert c.get("/health", headers={"Host": "attacker.example"}).status_code == 421
            r = c.post("/v1/scan", json={"top_n": 5, "min_history": 30, "lookback_days": 60})
            assert r.status_code == 202
            st = c.get(f"/v1/scan/{r.json()['id']}", params={"wait": 60}).json()
            assert st["state"] == "done", st
            assert json.loads(c.get(st["links"]["results"]).text)["count"] == 5
            assert c.get("/health").json()["store"]["last_session"] == "2026-11-20"
    finally:
        proc.terminate()  # uvicorn shuts down gracefully, then re-raises SIGTERM
        proc.wait(timeout=30)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        proc.stderr.close()
    assert "Application shutdown complete" in rest, rest
