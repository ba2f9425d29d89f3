"""Shared fixtures: small real markets in real DuckDB stores under pytest's tmp dirs."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from technic_v4 import data_engine
from technic_v4.data.market import MarketData
from technic_v4.testing import (
    END,
    EPOCH,
    N_SMALL,
    FaultyProvider,
    RedisServer,
    make_market,
)

# Hypothesis: every run searches new examples (no example database: nothing hides in a folder);
# a failure prints a @reproduce_failure blob. HYPOTHESIS_PROFILE=fixed derandomizes every
# property test, for a run that must repeat exactly. Property tests may also pin a derandomized
# pass of their own (tests/indicators/test_kernels.py runs both).
hypothesis_settings.register_profile("search", database=None, deadline=None, print_blob=True)
hypothesis_settings.register_profile("fixed", parent=hypothesis_settings.get_profile("search"),
                                     derandomize=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "search"))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[None]:
    """No test reads the developer's real store or TECHNIC_* variables by accident."""
    import os

    from technic_v4.config import settings as settings_mod

    for k in list(os.environ):
        if k.startswith("TECHNIC_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("TECHNIC_DATA_DIR", str(tmp_path_factory.mktemp("default-data")))
    monkeypatch.setenv("TECHNIC_PROGRESS", "false")
    settings_mod.reset_settings()
    yield
    settings_mod.reset_settings()


@pytest.fixture(scope="session")
def small_market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    """A filled 400-listing market ending 2026-11-20 (shared, read-only use)."""
    md = make_market(tmp_path_factory.mktemp("small"))
    md.ensure_current()
    yield md
    md.store.close()


@pytest.fixture
def seed_api(small_market: MarketData) -> Iterator[MarketData]:
    """The seed front doors (data_engine, scanner_core) wired to ``small_market``."""
    small_market.clear_memory()
    small_market.reset_stats()
    data_engine._market = small_market
    yield small_market
    data_engine._market = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def full_market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    """The default-size 6,000-listing market (a few seconds to build)."""
    md = make_market(tmp_path_factory.mktemp("full"), n=6000, epoch=dt.date(2025, 6, 2))
    md.ensure_current()
    yield md
    md.store.close()


__all__ = ["END", "EPOCH", "N_SMALL", "FaultyProvider", "make_market"]
