"""Fixtures for provider tests: a small synthetic market served by the loopback vendor server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polygon_setup import KEY, N_LISTINGS, P_EPOCH

from technic_v4.data.providers.polygon import PolygonProvider
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.testing import END
from technic_v4.vendor_server import VendorServer


@pytest.fixture(scope="session")
def synth() -> SyntheticProvider:
    return SyntheticProvider(n_listings=N_LISTINGS, seed=7, epoch=P_EPOCH, end=END)


@pytest.fixture
def vendor(synth: SyntheticProvider) -> Iterator[Callable[..., VendorServer]]:
    """``vendor(**kw)`` starts a VendorServer over ``synth`` (stopped after the test)."""
    started: list[VendorServer] = []

    def make(**kw: Any) -> VendorServer:
        kw.setdefault("api_key", KEY)
        srv = VendorServer(kw.pop("provider", synth), **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def polygon(vendor: Callable[..., VendorServer], tmp_path: Path
            ) -> Iterator[Callable[..., PolygonProvider]]:
    """``polygon(srv, **kw)``: a PolygonProvider on ``srv`` with quick backoff (closed after the
    test, before the server stops)."""
    made: list[PolygonProvider] = []

    def make(srv: VendorServer, key: str = KEY, **kw: Any) -> PolygonProvider:
        kw.setdefault("backoff_s", 0.01)
        kw.setdefault("max_backoff_s", 0.05)
        kw.setdefault("cache_dir", tmp_path / "polygon-cache")
        kw.setdefault("end", END)
        kw.setdefault("history_start", P_EPOCH)
        kw.setdefault("base_url", srv.url)
        p = PolygonProvider(key, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
