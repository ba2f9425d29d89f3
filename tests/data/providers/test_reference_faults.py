"""A vendor failure while refreshing reference data never fails an update or a scan: the stored
reference is used and the report, the scan's stats and its message say so."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings
from technic_v4.data.market import MarketData
from technic_v4.data.providers.polygon import PolygonProvider
from technic_v4.errors import ProviderError
from technic_v4.pipeline import scan
from technic_v4.testing import END
from technic_v4.vendor_server import Fault, VendorServer

END1 = dt.date(2026, 11, 13)


def _market(path: Path, provider: PolygonProvider) -> MarketData:
    return MarketData(settings=Settings(data_dir=path, progress=False), provider=provider)


@pytest.mark.parametrize(("endpoint", "kind", "status"), [
    ("tickers", "server_error", 403), ("tickers", "server_error", 503),
    ("tickers", "reset", 503), ("ticker_details", "server_error", 403)])
def test_reference_failure_keeps_the_stored_reference(
        vendor: Callable[..., VendorServer], polygon: Callable[..., PolygonProvider],
        tmp_path: Path, endpoint: str, kind: str, status: int) -> None:
    srv = vendor()
    first = _market(tmp_path / "data", polygon(srv, end=END1, cache_dir=tmp_path / "c1"))
    first.ensure_current()
    ref_before = first.store.reference()
    first.close()
    srv.add_fault(Fault(endpoint, kind, status=status, times=None))
    # A fresh reference cache: the provider must ask the vendor, which fails.
    md = _market(tmp_path / "data", polygon(srv, cache_dir=tmp_path / "c2", max_retries=1))
    try:
        res = scan(ScanConfig(min_history=20, lookback_days=30), md)
        upd = res.stats["update"]
        assert upd["sessions_fetched"] == 5 and upd["failed_sessions"] == {}
        assert upd["reference_refreshed"] is False
        assert f"polygon {endpoint}" in upd["reference_error"]
        assert "previous stored reference was used" in res.message
        assert res.stats["as_of"] == str(END) and len(res.frame) > 0
        assert md.store.reference().equals(ref_before)
        assert res.stats["counters"]["errors"] >= 1
    finally:
        md.close()


def test_reference_failure_on_an_empty_store_says_there_is_none(
        vendor: Callable[..., VendorServer], polygon: Callable[..., PolygonProvider],
        tmp_path: Path) -> None:
    srv = vendor(faults=[Fault("tickers", "server_error", status=403, times=None)])
    md = _market(tmp_path / "data", polygon(srv))
    try:
        with pytest.raises(ProviderError, match="the local store has none yet"):
            md.ensure_current()
        assert len(md.store.stored_sessions()) == 0  # no session stored without its listings
    finally:
        md.close()
