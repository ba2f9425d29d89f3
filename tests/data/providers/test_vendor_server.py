"""The loopback vendor server's wire format, seen by a plain HTTP client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import numpy as np
import pandas as pd
import pytest
from polygon_setup import KEY

from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.vendor_server import Fault, VendorServer

DAY = dt.date(2026, 11, 18)


def test_grouped_rows_look_like_polygons(synth: SyntheticProvider,
                                         vendor: Callable[..., VendorServer]) -> None:
    srv = vendor()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        body = c.get(f"/v2/aggs/grouped/locale/us/market/stocks/{DAY}",
                     params={"adjusted": "true"}).json()
    b = synth.bars_for_sessions([DAY])
    assert body["status"] == "OK" and body["resultsCount"] == len(b) == len(body["results"])
    row = body["results"][0]
    assert set(row) == {"T", "o", "h", "l", "c", "v", "vw", "t", "n"}
    assert row["t"] == pd.Timestamp(f"{DAY} 16:00", tz="America/New_York").value // 10**6
    closes = [r["c"] for r in body["results"]]
    np.testing.assert_array_equal(np.array(closes, dtype=float), b.close)  # null <-> NaN


def test_auth_faults_and_log(vendor: Callable[..., VendorServer]) -> None:
    srv = vendor(faults=[Fault("tickers", "rate_limit", retry_after=3, times=2)])
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/v3/reference/tickers").status_code == 401
        assert c.get("/v3/reference/tickers", params={"apiKey": "bad"}).json()["error"] \
            == "Unknown API Key 'bad'"
        r = c.get("/v3/reference/tickers", params={"apiKey": KEY})
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert c.get("/v3/reference/tickers", params={"apiKey": KEY}).status_code == 429
        assert c.get("/v3/reference/tickers", params={"apiKey": KEY}).status_code == 200
        assert c.get("/v9/nothing", params={"apiKey": KEY}).status_code == 404
        assert c.get("/v3/reference/tickers/NOPE", params={"apiKey": KEY}).status_code == 404
    assert srv.counts == {"tickers": 5, "unknown": 1, "ticker_details": 1}
    assert [r.status for r in srv.requests] == [401, 401, 429, 429, 200, 404, 404]


def test_paging_cursor(synth: SyntheticProvider, vendor: Callable[..., VendorServer]) -> None:
    srv = vendor(page_size=10, api_key=None)
    seen: list[str] = []
    with httpx.Client() as c:
        url: str | None = f"{srv.url}/v3/reference/tickers?market=stocks&active=true&limit=1000"
        while url:
            body = c.get(url).json()
            seen += [r["ticker"] for r in body["results"]]
            url = body.get("next_url")
    assert seen == sorted(synth.reference()["Symbol"])


def test_unknown_fault_kinds_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("tickers", "explode")
    with pytest.raises(ValueError, match="unknown endpoint"):
        Fault("quotes", "reset")
