"""The page's Backtest view in a real headless Chromium (as test_service_browser.py): run a
small backtest, follow its progress, see the report's charts and the summary tables the API
answers; then a second one shows an ETA and is cancelled from the page."""

from __future__ import annotations

from typing import Any

import pytest
from service_support import BacktestGate, Serve, needs_chromium

from technic_v4.data.market import MarketData

CHARTS = ["Cumulative excess return", "Equity curve and drawdown", "IC over time",
          "Mean return by quantile", "R-multiple histogram"]

pytestmark = needs_chromium


def test_page_backtest_charts_tables_eta_and_cancel(serve: Serve, market: MarketData,
                                                    browser: Any) -> None:
    from playwright.sync_api import expect

    gate = BacktestGate()
    gate.release.set()  # the first backtest runs through
    s = serve(market, hook=gate)
    gate.running = s
    saved = s.client.post("/v1/screens", json={"name": "longs", "config": {
        "where": 'Signal == "Strong Long" or Signal == "Long"', "top_n": 10}})
    assert saved.status_code == 201
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("request", lambda r: problems.append(f"off-host request {r.url}")
            if not r.url.startswith(s.url) and not r.url.startswith("data:") else None)
    page.goto(s.url + "/")
    page.wait_for_selector('#backtest[data-ready="1"]')
    page.wait_for_selector('#saved[data-ready="1"]')
    # The default range: the last year of stored sessions.
    assert page.input_value("#bt-from") == "2025-11-20"
    assert page.input_value("#bt-to") == "2026-11-20"
    page.select_option("#bt-screen", "longs")
    page.fill("#bt-from", "2026-08-03")
    page.fill("#bt-horizons", "1,5,21")
    page.select_option("#bt-rank-by", "TechRating")
    page.fill("#bt-max-positions", "5")
    page.click("#bt-run")
    page.wait_for_selector('#bt-status[data-state="done"]', timeout=60_000)
    assert page.get_attribute("#bt-progress", "aria-valuenow") == "100"

    # What the API answered for the page's backtest is what the page shows.
    (job,) = s.client.get("/v1/backtests").json()["backtests"]
    assert job["backtest"]["from"] == "2026-08-03" and job["backtest"]["horizons"] == [1, 5, 21]
    assert job["backtest"]["config"]["where"].startswith('Signal == "Strong Long"')
    res = s.client.get(f"/v1/backtest/{job['id']}").json()["results"]
    assert page.inner_text("#bt-message") == res["message"]
    alts = page.eval_on_selector_all("#bt-charts figure img", "im => im.map(i => i.alt)")
    assert alts == CHARTS
    # Every chart decoded as an image (the SVG is valid and the page's CSP allows it).
    sizes = page.eval_on_selector_all(
        "#bt-charts figure img", "im => im.map(i => [i.complete, i.naturalWidth])")
    assert all(done and width > 100 for done, width in sizes), sizes
    titles = page.eval_on_selector_all("#bt-tables table", "ts => ts.map(t => t.dataset.title)")
    assert titles == [t["title"] for t in res["tables"]]
    summary = '#bt-tables table[data-title="Forward returns of the matches"]'
    means = page.eval_on_selector_all(f'{summary} td[data-col="mean"]',
                                      "tds => tds.map(td => Number(td.dataset.value))")
    assert means == pytest.approx([r["mean"] for r in res["summary"]])
    rows = page.locator('#bt-tables table[data-title="Run"] tr', has_text="rows")
    assert rows.first.locator("td").nth(1).inner_text() == f"{res['rows']:,}"
    assert page.locator("#bt-frames button").count() == len(res["frames"])

    # A second backtest: held inside its run, the page shows its step and an ETA (measured
    # on the first one); Cancel ends it.
    gate.release.clear()
    gate.entered.clear()
    page.fill("#bt-from", "2025-11-20")
    page.click("#bt-run")
    assert gate.entered.wait(60)
    expect(page.locator("#bt-status")).to_contain_text("ETA", timeout=30_000)
    assert page.get_attribute("#bt-status", "data-state") == "running"
    assert gate.steps[-1] in page.inner_text("#bt-status")
    with page.expect_response(lambda r: r.request.method == "DELETE") as cancelled:
        page.click("#bt-cancel")
    assert cancelled.value.status == 202
    gate.release.set()
    page.wait_for_selector('#bt-status[data-state="cancelled"]', timeout=30_000)
    assert page.is_hidden("#bt-results")
    assert not problems, problems
