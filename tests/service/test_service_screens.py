"""The screen language over real HTTP: validate, presets, a screened scan, 422 with the caret."""

from __future__ import annotations

import numpy as np
import pandas as pd
from service_support import Serve

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.pipeline import COLUMNS
from technic_v4.service.cache import result_key
from technic_v4.terms.presets import presets


def test_validate_answers_keys_clauses_and_bars(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    r = s.client.post("/v1/screens/validate", json={
        "where": "close > SMA( close , 50 ) and RSI14 < 30", "columns": {"Hi": "highest(high,20)"},
        "sort_by": "change(close, 63)"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True
    assert body["where"]["key"] == "((close>sma(close,50)) and (RSI14<30))"
    assert body["where"]["clauses"] == [
        {"text": "close > SMA( close , 50 )", "key": "(close>sma(close,50))"},
        {"text": "RSI14 < 30", "key": "(RSI14<30)"}]
    assert body["where"]["bars"] == 50
    assert body["columns"] == {"Hi": {"key": "highest(high,20)", "type": "number", "bars": 20}}
    assert body["sort_by"] == {"key": "change(close,63)", "type": "number", "bars": 64}
    assert body["bars"] == 64
    r = s.client.post("/v1/screens/validate", json={"columns": {"Hi": "highest(high,20)"},
                                                    "sort_by": "hi"})
    assert r.json()["sort_by"] == {"column": "Hi"} and r.json()["where"] is None


def test_validate_422_points_at_the_fault(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    r = s.client.post("/v1/screens/validate", json={"where": "close > 1 and\n  smaa(50) > 2"})
    assert r.status_code == 422
    e = r.json()
    assert e["error"] == "invalid_expression" and e["field"] == "where"
    assert (e["line"], e["column"]) == (2, 3)
    assert e["caret"] == "  smaa(50) > 2\n  ^^^^"
    assert e["suggestions"] == ["sma"]
    assert e["message"].startswith("where: unknown function `smaa` at line 2, column 3")
    r = s.client.post("/v1/screens/validate", json={"columns": {"X": "close and 5"}})
    assert r.status_code == 422 and r.json()["field"] == "columns.X"
    assert r.json()["caret"] == "close and 5\n^^^^^"
    r = s.client.post("/v1/screens/validate", json={"wher": "close > 1"})
    assert r.status_code == 422 and r.json()["field"] == "wher"
    assert "valid fields: where, columns, sort_by, preset" in r.json()["message"]
    r = s.client.post("/v1/screens/validate", json={"preset": "vpc"})
    assert r.status_code == 422 and r.json()["field"] == "preset"
    assert "did you mean vcp" in r.json()["message"]


def test_presets_lists_every_preset(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    got = s.client.get("/v1/screens/presets").json()["presets"]
    assert [p["id"] for p in got] == list(presets())
    vcp = next(p for p in got if p["id"] == "vcp")
    assert vcp["expression"] == presets()["vcp"].expression and vcp["bars"] == 200


def test_scan_with_a_screen_over_http_equals_python(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    body = {"where": "close > SMA50 and RSI14 < 70", "near_miss": 1, "top_n": 30,
            "columns": {"Hi20": "highest(high, 20)", "Up": "close > open"}, "sort_by": "Hi20"}
    st = s.scan(body)
    assert st["state"] == "done", st
    res = s.client.get(f"/v1/scan/{st['id']}/results").json()
    assert res["columns"] == [*COLUMNS, "Failed", "Hi20", "Up"]
    frame = pipeline.scan(ScanConfig(**body), market).frame
    assert [r["Symbol"] for r in res["rows"]] == frame["Symbol"].tolist()
    assert [r["Matched"] for r in res["rows"]] == frame["Matched"].tolist()
    assert [r["Failed"] for r in res["rows"]] == frame["Failed"].tolist()
    assert np.array_equal([r["Hi20"] for r in res["rows"]], frame["Hi20"].to_numpy())
    assert [r["Up"] for r in res["rows"]] == frame["Up"].tolist()
    assert pd.Series([r["Hi20"] for r in res["rows"]]).is_monotonic_decreasing


def test_scan_422_carries_line_column_caret(serve: Serve, market: MarketData) -> None:
    s = serve(market)
    r = s.client.post("/v1/scan", json={"where": "sector > 3"})
    assert r.status_code == 422
    e = r.json()
    assert e["field"] == "where" and (e["line"], e["column"]) == (1, 8)
    assert e["caret"] == "sector > 3\n       ^"
    assert e["detail"] == f"{e['message']}\nsector > 3\n       ^"
    assert e["suggestions"] == []
    # More history than stored: 422 at submit, naming the term.
    n = market.max_bars() + 1
    r = s.client.post("/v1/scan", json={"columns": {"Old": f"close[{n}]"}})
    assert r.status_code == 422 and r.json()["field"] == "columns.Old"
    assert f"`close[{n}]` needs {n + 1} sessions" in r.json()["message"]


def test_the_result_key_keeps_the_order_of_columns() -> None:
    a = ScanConfig(columns={"A": "close", "B": "open"})
    b = ScanConfig(columns={"B": "open", "A": "close"})
    assert result_key(a, "v") != result_key(b, "v")
    assert result_key(a, "v") == result_key(ScanConfig(**a.model_dump()), "v")
    assert result_key(ScanConfig(where=" close > 1 "), "v") == \
        result_key(ScanConfig(where="close > 1"), "v")
