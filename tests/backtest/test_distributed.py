"""The replay on a real multi-node Ray cluster (two raylets on this machine, Ray's own
``cluster_utils``) equals the local replay frame for frame; its tasks ran on both nodes; a
cancel stops it; without Ray it runs locally and says why, once."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from replay_support import CONFIG, END, START, build_market

from technic_v4.backtest import distributed
from technic_v4.data.market import MarketData
from technic_v4.errors import ScanCancelled
from technic_v4.execution import reset_ray_failure

rp = importlib.import_module("technic_v4.backtest.replay")  # the package exports replay()
ray = pytest.importorskip("ray", reason="ray is a test dependency (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = build_market(tmp_path_factory.mktemp("distributed"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def cluster_md(md: MarketData) -> Iterator[MarketData]:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 100 * 1024 * 1024, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 1024 * 1024)
        cluster.wait_for_nodes()
        settings = md.settings.model_copy(update={"use_ray": True,
                                                  "ray_address": cluster.address})
        reset_ray_failure()
        yield MarketData(settings=settings, provider=md.provider, store=md.store)
    finally:
        ray.shutdown()
        cluster.shutdown()
        reset_ray_failure()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # 120 listings: chunks of 16 views, two chunks per task (one store read for both): ~5
    # tasks per pass (both runners cut the same chunks).
    monkeypatch.setattr(rp, "CHUNK_ROWS", 16)
    monkeypatch.setattr(distributed, "TASK_LISTINGS", 32)


def _same(a: rp.ReplayResult, b: rp.ReplayResult) -> None:
    for name in ("matches", "universe", "regime"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    np.testing.assert_array_equal(a.match_listing, b.match_listing)
    np.testing.assert_array_equal(a.universe_listing, b.universe_listing)
    assert list(a.sessions) == list(b.sessions)


@pytest.mark.usefixtures("small_chunks")
def test_ray_replay_equals_local_on_two_nodes(cluster_md: MarketData, md: MarketData) -> None:
    local = rp.replay(CONFIG, START, END, data=md)
    seen: list[tuple[str, int, int]] = []
    on_ray = rp.replay(CONFIG, START, END, data=cluster_md,
                       on_progress=lambda s, d, t: seen.append((s, d, t)))
    run = on_ray.stats["runner"]
    assert run["runner"] == "ray" and run["fallback_reason"] is None, run
    assert run["nodes"] == 2 and run["cpus"] == 2
    assert run["nodes_used"] == 2, run  # tasks really ran on both raylets
    assert run["tasks"] >= 8 and run["tasks_per_s"] > 0
    assert local.stats["runner"]["runner"] == "local"
    # The driver loaded no whole-market panel: the tasks read their listings' bars themselves.
    assert cluster_md.memory.find(lambda key: True) is None
    assert md.memory.find(lambda key: True) is not None  # (the local replay did)
    assert len(local.matches) > 0 and local.matches["AsOf"].nunique() > 10
    _same(on_ray, local)
    # Progress per finished chunk, through every view of both passes.
    steps = {s for s, _, _ in seen}
    assert {"pre-screen", "indicators"} <= steps
    assert [d for s, d, t in seen if s == "pre-screen"][-1] == \
        [t for s, d, t in seen if s == "pre-screen"][-1]


@pytest.mark.usefixtures("small_chunks")
def test_ray_replay_every_third_session_and_a_plain_screen(cluster_md: MarketData,
                                                           md: MarketData) -> None:
    cfg = CONFIG.model_copy(update={"where": None, "preset": None, "columns": {}, "top_n": 5})
    _same(rp.replay(cfg, "2025-11-03", END, every=3, data=cluster_md),
          rp.replay(cfg, "2025-11-03", END, every=3, data=md))


@pytest.mark.usefixtures("small_chunks")
def test_cancel_stops_the_ray_replay(cluster_md: MarketData) -> None:
    stop = threading.Event()
    seen: list[tuple[str, int, int]] = []

    def progress(step: str, done: int, total: int) -> None:
        seen.append((step, done, total))
        if step == "indicators" and done > 0:
            stop.set()

    with pytest.raises(ScanCancelled, match="indicators"):
        rp.replay(CONFIG, START, END, data=cluster_md, on_progress=progress, cancel=stop)
    last = [(d, t) for s, d, t in seen if s == "indicators"][-1]
    assert 0 < last[0] < last[1]  # stopped mid-pass
    # The cluster is free again (the queued tasks were cancelled): a replay still runs.
    res = rp.replay(CONFIG, START, END, data=cluster_md)
    assert res.stats["runner"]["runner"] == "ray"


_NO_RAY = r"""
import sys, datetime as dt
sys.modules["ray"] = None  # as if Ray were not installed
from pathlib import Path
from technic_v4.testing import make_market
from technic_v4.backtest.replay import replay
from technic_v4.config.scan import ScanConfig
md = make_market(Path(sys.argv[1]), n=60, epoch=dt.date(2025, 9, 2), use_ray=True)
md.ensure_current()
res = replay(ScanConfig(min_history=30), "2025-11-03", "2025-11-20", data=md)
print("RUNNER", res.stats["runner"]["runner"])
print("MSG", res.message)
print("ROWS", len(res.universe))
"""


def test_without_ray_the_replay_runs_locally_and_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _NO_RAY, str(tmp_path)], capture_output=True,
                       text=True, timeout=300, check=False, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert "RUNNER local" in r.stdout
    msg = r.stdout.split("MSG ")[1].splitlines()[0]
    assert msg.count("ray is not installed") == 1 and msg.endswith("running locally.")
    assert r.stderr.count("ray is not installed") == 1  # logged once
    assert int(r.stdout.split("ROWS ")[1].split()[0]) > 0


def test_a_task_refuses_a_store_that_changed(md: MarketData) -> None:
    from technic_v4.backtest.distributed import Source, load_chunk
    from technic_v4.errors import DataError

    ident = md.store.identity()
    days = md.store.stored_sessions()[-5:]
    specs = rp.chunk_specs(md.reference()["sid"].to_numpy()[:8], md.actions(), "split", days)
    plan = rp.Plan(days=days, width=md.max_bars(), adjust="split",
                   as_of=days[-1].astype(object))
    ok = load_chunk(Source(md.settings, md.store.path, ident), specs[0], plan)
    assert len(ok.rows) == 8 and (ok.at >= 0).any()
    with pytest.raises(DataError, match="changed during the replay"):
        load_chunk(Source(md.settings, md.store.path, (ident[0], ident[1] + 1)), specs[0], plan)


def test_groups_keep_spec_order_within_the_listing_budget() -> None:
    specs = [rp.ChunkSpec(sids=np.arange(n), bases=np.zeros(n, dtype=np.int64),
                          q0=np.zeros(n, dtype=np.int64), q1=np.ones(n, dtype=np.int64))
             for n in (16, 16, 16, 40, 8, 8)]
    got = distributed.groups(specs, 32)
    assert [[len(sp.sids) for sp in g] for g in got] == [[16, 16], [16], [40], [8, 8]]
    assert [sp for g in got for sp in g] == specs
