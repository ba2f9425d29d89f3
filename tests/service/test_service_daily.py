"""Saved screens, watchlists and alert targets over real HTTP; the scheduler in the lifespan."""

from __future__ import annotations

import time
from pathlib import Path

from service_support import Serve

from technic_v4.config.settings import Settings
from technic_v4.daily.run import run_session
from technic_v4.daily.state import StateStore
from technic_v4.data.market import MarketData
from technic_v4.notify import Delivery, Message
from technic_v4.service.app import ServiceOptions


def _settings(market: MarketData, tmp_path: Path) -> Settings:
    """The market's settings with the state store in ``tmp_path`` (not the shared market's)."""
    return market.settings.model_copy(update={"data_dir": tmp_path})


def test_crud_errors_and_secrets(serve: Serve, market: MarketData, tmp_path: Path) -> None:
    s = serve(market, settings=_settings(market, tmp_path))
    c = s.client
    r = c.post("/v1/alerts", json={"name": "hook", "kind": "webhook",
                                   "url": "http://hooks.example/h", "secret": "s3cr3t"})
    assert r.status_code == 201, r.text
    assert r.json()["secret"] == "set"
    r = c.post("/v1/screens", json={"name": "dips", "config": {"where": "RSI14 < 40"},
                                    "targets": ["hook"]})
    assert r.status_code == 201, r.text
    assert r.json()["config"] == {"where": "RSI14 < 40"}
    r = c.post("/v1/screens", json={"name": "bad", "config": {"where": "close > smaa(5)"}})
    assert r.status_code == 422 and r.json()["field"] == "where"
    r = c.post("/v1/screens", json={"name": "x", "config": {"where": "close > 1"},
                                    "targets": ["nope"]})
    assert r.status_code == 422 and r.json()["field"] == "targets"
    r = c.post("/v1/screens", json={"name": "presets", "config": {"where": "close > 1"}})
    assert r.status_code == 422 and r.json()["field"] == "name"
    assert c.get("/v1/screens/nope").status_code == 404
    # The screen language's routes still answer.
    assert c.get("/v1/screens/presets").status_code == 200
    assert c.post("/v1/screens/validate", json={"where": "close > 1"}).status_code == 200
    assert [x["name"] for x in c.get("/v1/screens").json()["screens"]] == ["dips"]
    r = c.post("/v1/screens/dips/run")
    assert r.status_code == 202, r.text
    done = s.wait(r.json()["id"])
    assert done["state"] == "done"
    rows = c.get(f"/v1/scan/{r.json()['id']}/results").json()["rows"]
    assert rows and all(x["RSI14"] < 40 for x in rows)
    a, b = (str(x) for x in market.reference()["Symbol"][:2])
    r = c.post("/v1/watchlists", json={"name": "core", "items": [f"{a}:10:9",
                                                                 {"symbol": b.lower()}],
                                       "targets": ["hook"]})
    assert r.status_code == 201, r.text
    assert [i["symbol"] for i in r.json()["items"]] == [a, b]
    r = c.post("/v1/watchlists", json={"name": "w2", "items": ["AAA:-1"]})
    assert r.status_code == 422 and r.json()["field"] == "items.AAA.entry"

    # A delivery that fails for good is a dead letter, listed without secrets.
    def failing(target: dict[str, object], m: Message) -> Delivery:
        return Delivery(str(target["name"]), False, 4, "HTTP 503 after 4 attempts", 503)

    st = StateStore(tmp_path)
    run_session(market.store.last_session(), state=st, data=market, send=failing,
                update=False)
    body = c.get("/v1/alerts").json()
    assert "s3cr3t" not in str(body)
    assert body["targets"][0]["secret"] == "set"
    assert {d["last_error"] for d in body["dead_letters"]} == {"HTTP 503 after 4 attempts"}
    shown = c.get("/v1/screens/dips").json()
    assert shown["last_run"]["session"] == str(market.store.last_session())
    w = c.get("/v1/watchlists/core").json()
    first = w["items"][0]
    assert first["Stop"] == 9.0 and first["Signal"] is not None
    assert first["ToStopPct"] == round(100 * (9.0 - first["Close"]) / first["Close"], 4)
    assert w["items"][1]["Stop"] is not None  # the plan's level when the user gave none
    assert c.delete("/v1/screens/dips").status_code == 204
    assert c.delete("/v1/watchlists/core").status_code == 204
    assert c.delete("/v1/alerts/hook").status_code == 204
    assert c.get("/v1/screens").json()["screens"] == []


def test_the_scheduler_runs_inside_the_service(serve: Serve, market: MarketData,
                                              tmp_path: Path) -> None:
    StateStore(tmp_path).put_screen("up", {"where": "close > sma(close, 5)"}, True, [])
    s = serve(market, settings=_settings(market, tmp_path),
              options=ServiceOptions(schedule=True))
    deadline = time.monotonic() + 120
    last = None
    while last is None and time.monotonic() < deadline:
        last = s.client.get("/v1/screens").json()["screens"][0]["last_run"]
        time.sleep(0.1)
    assert last is not None and last["session"] == str(market.store.last_session())
    assert s.service.scheduler is not None


def test_wrong_json_types_are_422_naming_the_field(serve: Serve, market: MarketData,
                                                    tmp_path: Path) -> None:
    c = serve(market, settings=_settings(market, tmp_path)).client
    bad = [("/v1/screens", {"name": "s1", "config": "close > 1"}, "config"),
           ("/v1/screens", {"name": "s2", "config": {"where": "close > 1"}, "targets": "hook"},
            "targets"),
           ("/v1/screens", {"name": "s3", "config": {"where": "close > 1"}, "targets": 5},
            "targets"),
           ("/v1/screens", {"name": "s4", "config": {"where": "close > 1"}, "enabled": "false"},
            "enabled"),
           ("/v1/watchlists", {"name": "w1", "items": "AAPL"}, "items"),
           ("/v1/watchlists", {"name": "w2", "items": 5}, "items"),
           ("/v1/watchlists", {"name": "w3", "items": ["AAPL"], "targets": {"a": 1}},
            "targets")]
    for path, obj, field in bad:
        r = c.post(path, json=obj)
        assert r.status_code == 422 and r.json()["field"] == field, (obj, r.text)
    assert c.get("/v1/screens").json()["screens"] == []
    assert c.get("/v1/watchlists").json()["watchlists"] == []
