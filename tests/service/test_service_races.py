"""Another process writing, deleting or rebuilding the store while the service scans: a result
is only cached under the data it read, a job always ends, and the data version follows the
store's identity (id and version), not its version number alone."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from service_support import Running, Serve

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData, delete_store
from technic_v4.service.admission import estimate_bytes
from technic_v4.service.jobs import FALLBACK_LISTINGS
from technic_v4.testing import END, make_market

N = 120
BODY = {"max_symbols": 20, "top_n": 20, "min_history": 50}

# Another process (``technic data update`` re-fetching a split) triples one symbol's prices.
WRITER = """
import datetime as dt, sys
from technic_v4.data.store import Store
s = Store(sys.argv[1]); sym = sys.argv[2]
sess = s.stored_sessions()
first, last = sess[0].astype(dt.date), sess[-1].astype(dt.date)
b = s.sessions_batch(first, last)
b = b.take((b.symbol == sym).nonzero()[0])
for a in (b.open, b.high, b.low, b.close):
    a[:] = a * 3
s.replace_symbols(b, [sym], first, last)
"""

REBUILD = """
import datetime as dt, sys
from pathlib import Path
from technic_v4.testing import make_market
m = make_market(Path(sys.argv[1]), n=int(sys.argv[2]), end=dt.date.fromisoformat(sys.argv[3]))
m.ensure_current()
print(m.store.identity()[1])
"""


def _market(path: Path, end: dt.date = END) -> MarketData:
    md = make_market(path, n=N, end=end)
    md.ensure_current()
    return md


def _close(s: Running, status: dict[str, Any], symbol: str) -> float:
    rows = s.client.get(status["links"]["results"]).json()["rows"]
    return float(next(r["Close"] for r in rows if r["Symbol"] == symbol))


class _AtOutput:
    """A progress hook running ``action`` once, when the first scan reaches its last stage
    (after every read of the store)."""

    def __init__(self, action: Any) -> None:
        self.action = action
        self.done = False

    def __call__(self, job_id: str, stage: str, done: int, total: int) -> None:
        if stage == "output" and not self.done:
            self.done = True
            self.action()


def test_a_write_during_the_scan_is_not_cached_under_the_new_data(serve: Serve,
                                                                  tmp_path: Path) -> None:
    md = _market(tmp_path / "m")
    sym = str(pipeline.scan(ScanConfig(**BODY), md).frame["Symbol"].iloc[0])
    hook = _AtOutput(lambda: subprocess.run(
        [sys.executable, "-c", WRITER, str(md.store.path), sym], check=True))
    s = serve(md, hook=hook)
    first = s.scan(BODY)
    assert hook.done and first["state"] == "done"
    old = _close(s, first, sym)

    # The store moved after the scan read it: the first result names no data version, and
    # an identical request computes from the new data instead of joining the old result.
    second = s.scan(BODY)
    assert second["id"] != first["id"] and s.service.jobs.computations == 2, second
    assert second["data_version"] != first["data_version"]
    assert abs(_close(s, second, sym) - 3 * old) < 1e-6 * old
    assert s.service.cache.get_memory(first["key"]) is None  # never cached

    third = s.scan(BODY)
    assert third["id"] == second["id"] and s.service.jobs.computations == 2
    assert _close(s, third, sym) == _close(s, second, sym)


def test_a_failure_after_the_scan_fails_the_job(serve: Serve, tmp_path: Path) -> None:
    md = _market(tmp_path / "m")
    # `technic cache clear --store` in another shell as the scan ends.
    s = serve(md, hook=_AtOutput(lambda: delete_store(md.store.path)))
    r = s.client.post("/v1/scan", json=BODY)
    assert r.status_code == 202, r.text
    st = s.client.get(f"/v1/scan/{r.json()['id']}", params={"wait": 20}).json()
    assert st["state"] == "failed", st
    assert st["error"]["error"] == "StoreError" and "\n" not in st["error"]["message"]
    assert s.service.jobs.active() == {"queued": 0, "running": 0}


def test_a_rebuilt_store_at_the_same_version_number_gets_a_new_data_version(
        serve: Serve, tmp_path: Path) -> None:
    md = _market(tmp_path, end=END - dt.timedelta(days=7))
    s = serve(md)
    first = s.scan(BODY)
    old_id, old_version = md.store.identity()

    delete_store(md.store.path)
    out = subprocess.run([sys.executable, "-c", REBUILD, str(tmp_path), str(N), str(END)],
                         check=True, capture_output=True, text=True).stdout
    assert int(out) == old_version and md.store.identity() == (md.store.store_id, old_version)
    assert md.store.store_id != old_id  # the premise: a new store, the same version number

    second = s.scan(BODY)
    assert second["id"] != first["id"] and s.service.jobs.computations == 2, second
    assert second["data_version"] != first["data_version"]
    s.service.health.refresh_store()
    store = s.client.get("/health").json()["store"]
    assert store["last_session"] == str(md.store.last_session()) == str(END)
    assert store["data_version"] == second["data_version"]


def test_an_unreadable_store_still_reserves_memory(serve: Serve, tmp_path: Path) -> None:
    md = _market(tmp_path / "m")
    s = serve(md)
    config = ScanConfig(**BODY)
    readable = s.service.jobs.cost(config)
    assert readable > 0
    delete_store(md.store.path)
    assert s.service.jobs.cost(config) == estimate_bytes(FALLBACK_LISTINGS, config.bars_needed)
