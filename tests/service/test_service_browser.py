"""The web page in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
scan, progress, sort, filter, chart with SMA/Bollinger and the trade plan's lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from service_support import Gate, Serve, needs_chromium

from technic_v4.data.market import MarketData

SECTORS = ["Financials", "Health Care", "Industrials", "Information Technology"]
# The page's colours (app.js COLORS): each must appear on the chart.
LINE_COLOURS = {"SMA20": "#f59e0b", "SMA50": "#2563eb", "SMA200": "#7c3aed",
                "candle up": "#16a34a", "candle down": "#dc2626", "Entry": "#0891b2",
                "Stop": "#e11d48", "Target": "#059669"}

pytestmark = needs_chromium


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_page_scan_sort_filter_chart(serve: Serve, market: MarketData, browser: Any,
                                     tmp_path: Path) -> None:
    from PIL import Image

    s = serve(market)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("request", lambda r: problems.append(f"off-host request {r.url}")
            if not r.url.startswith(s.url) else None)

    page.goto(s.url + "/")
    page.wait_for_selector('#sectors[data-ready="1"]')
    assert page.locator("#sectors option").count() == 11
    page.fill("#max-symbols", "200")
    page.fill("#top-n", "40")
    page.select_option("#sectors", SECTORS)
    page.click("#run")
    page.wait_for_selector('#status[data-state="done"]', timeout=30_000)
    assert page.get_attribute("#progress", "aria-valuenow") == "100"
    assert page.inner_text("#message").startswith("Scanned")

    # The table shows what the API returns for the same request (shared, not recomputed).
    api = s.client.post("/v1/scan", json={"max_symbols": 200, "top_n": 40, "sectors": SECTORS})
    assert api.json()["served_by"] == "shared" and s.service.jobs.computations == 1
    rows = s.client.get(api.json()["links"]["results"]).json()["rows"]
    assert len(rows) == 40
    table_rows = page.locator("#table tbody tr")
    assert table_rows.count() == len(rows)

    def column(col: str) -> list[str]:
        return page.eval_on_selector_all(f'#table tbody td[data-col="{col}"]',
                                         "tds => tds.map(td => td.dataset.value)")

    assert column("Symbol") == [r["Symbol"] for r in rows]  # ranked order
    assert set(column("Sector")) <= set(SECTORS)

    # Sort by Close: ascending, then descending.
    page.click('#table th[data-col="Close"]')
    closes = [float(v) for v in column("Close")]
    assert closes == sorted(closes) and closes != sorted(closes, reverse=True)
    assert page.get_attribute('#table th[data-col="Close"]', "aria-sort") == "ascending"
    page.click('#table th[data-col="Close"]')
    assert [float(v) for v in column("Close")] == sorted(closes, reverse=True)

    # Filter: a sector name keeps exactly that sector's rows.
    page.fill("#filter", "health care")
    want = sorted(r["Symbol"] for r in rows if r["Sector"] == "Health Care")
    assert want and sorted(column("Symbol")) == want
    assert set(column("Sector")) == {"Health Care"}
    assert page.inner_text("#count").startswith(f"{len(want)} of {len(rows)}")
    page.fill("#filter", "")
    page.select_option("#signal-filter", "Strong Long")
    assert set(column("Signal")) == {"Strong Long"}
    page.select_option("#signal-filter", "")
    assert table_rows.count() == len(rows)

    # Click the top-ranked symbol: its chart with SMAs, Bollinger bands and the plan's lines.
    page.click('#table th[data-col="Rank"]')
    top = rows[0]
    page.click(f'#table button.sym:text-is("{top["Symbol"]}")')
    page.wait_for_selector('#chart[data-ready="1"]')
    assert page.get_attribute("#chart", "data-symbol") == top["Symbol"]
    assert page.get_attribute("#chart", "data-bars") == "300"
    assert page.inner_text('#plan dd[data-key="Entry"]') == f"{top['Entry']:,.2f}"
    assert page.inner_text('#plan dd[data-key="Stop"]') == f"{top['Stop']:,.2f}"
    assert page.locator("#legend span").count() == 7  # 3 SMAs, Bollinger, entry/stop/target
    assert page.locator("#chart canvas").count() >= 1

    png = tmp_path / "chart.png"
    page.locator("#chart").screenshot(path=str(png))
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    h, w, _ = img.shape
    assert w > 400 and h > 300
    background = (np.abs(img - 255).sum(axis=2) > 30)
    assert background.mean() > 0.04, f"only {background.mean():.1%} of the chart is drawn"
    for name, colour in LINE_COLOURS.items():
        near = (np.abs(img - _rgb(colour)).sum(axis=2) <= 24).sum()
        assert near >= 25, f"{name} ({colour}) not drawn: {near} pixels"
    assert not problems, problems


def test_page_with_api_key(serve: Serve, market: MarketData, browser: Any) -> None:
    """With TECHNIC_API_KEY set the page asks for the key and sends it as a header (also on
    the progress stream); it never puts it in a URL. The scan is held until the page follows
    it, so it always has a progress stream to open (a scan already done when the page got its
    answer would need none)."""
    key = "page-key-7f3a"
    gate = Gate()
    s = serve(market, settings=market.settings.model_copy(update={"api_key": key}), hook=gate)
    page = browser.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    streamed: list[str | None] = []
    page.on("request", lambda r: streamed.append(r.headers.get("x-api-key"))
            if r.url.endswith("/events") else None)
    page.goto(s.url + "/")
    page.wait_for_selector("#key-form", state="visible")
    page.fill("#api-key", key)
    page.click("#key-form button")
    page.wait_for_selector('#sectors[data-ready="1"]')
    page.fill("#max-symbols", "50")
    with page.expect_request(lambda r: r.url.endswith("/events")):
        page.click("#run")
    gate.release.set()
    page.wait_for_selector('#status[data-state="done"]', timeout=30_000)
    assert page.locator("#table tbody tr").count() > 0
    assert streamed == [key]
    assert not any(key in u for u in urls)


def test_docs_render_under_the_content_security_policy(serve: Serve, market: MarketData,
                                                       browser: Any) -> None:
    """Swagger UI at /docs from this origin only, with no CSP violation or script error."""
    s = serve(market)
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("request", lambda r: problems.append(f"off-host request {r.url}")
            if not r.url.startswith(s.url) else None)
    page.goto(s.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "technic" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".swagger-ui .opblock").count() >= 10
    assert page.locator(".swagger-ui button.authorize").count() == 1  # the X-API-Key scheme
    assert not problems, problems


def test_page_screen_box_validates_as_you_type_and_presets_run(
        serve: Serve, market: MarketData, browser: Any) -> None:
    """Typing a bad expression shows the caret under the character at fault; a preset (with
    a where) runs and its rows show their Matched clauses."""
    from playwright.sync_api import expect

    s = serve(market)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # The browser logs each 422 answer of the validator; nothing else may be logged.
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") and "status of 422" not in m.text else None)
    page.goto(s.url + "/")
    page.wait_for_selector('#preset[data-ready="1"]')
    assert page.locator("#preset option").count() == 13  # (none) and the 12 presets

    page.locator("#where").press_sequentially("close > smaa(50)", delay=5)
    page.wait_for_selector('#where-check[data-state="error"]')
    lines = page.inner_text("#where-check").split("\n")
    assert lines[:2] == ["close > smaa(50)", "        ^^^^"]
    assert "did you mean `sma`?" in lines[2]
    assert page.get_attribute("#where", "aria-invalid") == "true"
    # The carets sit under "smaa" on the screen, not only in the text.
    x = page.evaluate("""() => {
        const node = document.getElementById('where-check').firstChild;
        const at = (i) => { const r = document.createRange(); r.setStart(node, i);
                            r.setEnd(node, i + 1); return r.getBoundingClientRect().left; };
        const text = node.textContent, caret = text.indexOf('^');
        return [at(8), at(caret)];
    }""")
    assert abs(x[0] - x[1]) < 1.0, x

    page.fill("#where", "RSI14 < 90")
    page.wait_for_selector('#where-check[data-state="ok"]')
    assert "1 clause" in page.inner_text("#where-check")
    page.select_option("#preset", "minervini_trend_template")
    expect(page.locator("#where-check")).to_contain_text("11 clauses")
    assert "close > sma(close, 150) and close > sma(close, 200)" in \
        page.inner_text("#preset-expr")
    page.fill("#max-symbols", "200")
    page.click("#run")
    page.wait_for_selector('#status[data-state="done"]', timeout=30_000)
    body = {"max_symbols": 200, "where": "RSI14 < 90", "preset": "minervini_trend_template"}
    api = s.client.post("/v1/scan", json=body)
    assert api.json()["served_by"] == "shared"
    rows = s.client.get(api.json()["links"]["results"]).json()["rows"]
    assert len(rows) > 0
    symbols = page.eval_on_selector_all('#table tbody td[data-col="Symbol"]',
                                        "tds => tds.map(td => td.dataset.value)")
    assert symbols == [r["Symbol"] for r in rows]
    matched = page.eval_on_selector_all('#table tbody td[data-col="Matched"]',
                                        "tds => tds.map(td => td.dataset.value)")
    assert matched == [r["Matched"] for r in rows]
    assert all(m.endswith("RSRating >= 70; RSI14 < 90") for m in matched)
    assert not problems, problems


def test_page_lists_saved_screens_with_changes_and_a_watchlist(
        serve: Serve, market: MarketData, browser: Any, tmp_path: Path) -> None:
    """Saved screens with their last run and its changes; a watchlist with each symbol's
    signal and distance to stop and target (what the API answers, as the page shows it)."""
    from technic_v4.daily.run import run_session
    from technic_v4.daily.state import StateStore
    from technic_v4.notify import Delivery

    st = StateStore(tmp_path)
    st.put_screen("up", {"where": "close > sma(close, 5)"}, True, [])
    syms = [str(x) for x in market.reference()["Symbol"][:2]]
    st.put_watchlist("core", [{"symbol": syms[0], "stop": 1.0}, {"symbol": syms[1]}], [])
    run_session(market.store.last_session(), state=st, data=market, update=False,
                send=lambda t, m: Delivery(str(t["name"]), True, 1))
    s = serve(market, settings=market.settings.model_copy(update={"data_dir": tmp_path}))
    api_screen = s.client.get("/v1/screens/up").json()
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.goto(s.url + "/")
    page.wait_for_selector('#saved[data-ready="1"]')
    row = page.locator('#saved-table tr[data-screen="up"]')
    run = api_screen["last_run"]
    assert row.locator('td[data-col="entered"]').inner_text() == str(run["entered"])
    assert row.locator('td[data-col="left"]').inner_text() == str(run["left"])
    assert run["session"] in row.inner_text()
    row.locator("button").click()
    page.wait_for_selector('#changes[data-screen="up"]')
    shown = page.eval_on_selector_all("#entered li", "lis => lis.map(li => li.dataset.symbol)")
    assert shown == [r["Symbol"] for r in run["changes"]["entered"]]
    page.wait_for_selector('#watch-table[data-watchlist="core"]')
    w = s.client.get("/v1/watchlists/core").json()
    first = page.locator(f'#watch-table tr[data-symbol="{syms[0]}"]')
    want = w["items"][0]["ToStopPct"]
    assert first.locator('td[data-col="ToStopPct"]').inner_text() == f"{want:.1f}%"
    assert w["items"][0]["Signal"] in first.inner_text()
    # A daily-run message's link opens the screen's changes (a fresh page: no click).
    linked = browser.new_page()
    linked.goto(s.url + "/#screen=up")
    linked.wait_for_selector('#changes[data-screen="up"]')
    assert linked.eval_on_selector_all("#entered li", "lis => lis.length") == len(shown)
    assert not problems, problems
