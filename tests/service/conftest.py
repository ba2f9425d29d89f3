"""Service fixtures: the real app served by uvicorn on a loopback port, talked to over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from service_support import CHROMIUM, CHROMIUM_ARGS, Gate, Running, Serve, ServerThread

from technic_v4.config.settings import Settings
from technic_v4.data.market import MarketData
from technic_v4.service.app import ServiceOptions, create_app
from technic_v4.service.jobs import ProgressHook


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(market, settings=None, options=None, hook=None)`` -> a running service."""
    started: list[Running] = []
    gates: list[Gate] = []

    def _serve(market: MarketData, settings: Settings | None = None,
               options: ServiceOptions | None = None, hook: ProgressHook | None = None
               ) -> Running:
        if isinstance(hook, Gate):
            gates.append(hook)
        app = create_app(market, settings, options, progress_hook=hook)
        server = ServerThread(app).start()
        client = httpx.Client(base_url=server.url, timeout=60)
        running = Running(server, client, app.state.service)
        started.append(running)
        return running

    yield _serve
    for g in gates:  # never leave a worker blocked
        g.release.set()
    for r in started:
        r.client.close()
        r.server.stop()


@pytest.fixture
def market(small_market: MarketData) -> MarketData:
    """The shared small market (read-only use), with fresh counters."""
    small_market.reset_stats()
    return small_market


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (tests marked ``needs_chromium``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
