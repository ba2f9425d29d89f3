"""The replay's chunks as Ray tasks (``use_ray``): a :class:`RayChunkRunner` runs the pure
chunk functions of :mod:`technic_v4.backtest.replay` (``pre_chunk``, ``score_chunk``) on a Ray
cluster, one task per group of :class:`~technic_v4.backtest.replay.ChunkSpec` (up to
``TASK_LISTINGS`` listings: one store read per task), with the same results
in the same order as the local :class:`~technic_v4.backtest.replay.ChunkRunner`.

Where the bars come from: each task loads its own listings from the store on its worker
(``MarketData.symbols_panel`` of the chunk's listings as of the replay's last session, every
stored bar, opened read-only with the driver's settings and store file) and cuts the chunk's
views from that small panel with ``replay.materialize``, exactly as the local runner cuts them
from the whole-market panel (adjustment is per row, so the views are the same bits). The
driver ships only the specs and, once per pass, the shared context (``ray.put``): no bar
travels through the object store, so the driver never needs every bar of a large market.
The store file must be readable at the same path on every node (one machine, or a shared
file system); a task that finds another store version than the driver's fails (the store
changed under the replay).

At most ``2 x`` the cluster's CPUs tasks are in flight (memory stays bounded); results are
yielded in spec order; progress and cancel run per finished chunk, and a cancel (or any error)
cancels the tasks still queued or running.

Ray is imported only here, and only when ``use_ray`` is set: without it (not installed, or
the cluster unreachable) the replay runs locally and says why (:func:`connect`). On Ray the
driver loads no bars at all: :func:`outline` stands for the whole-market panel (listings,
width, actions), and only SPY's row (the regime) is read from the store.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from technic_v4.backtest.replay import ChunkRunner, ChunkSpec, Plan, _Chunk, _Ticker, materialize
from technic_v4.config.settings import Settings
from technic_v4.data import adjust as adj
from technic_v4.data.market import MarketData
from technic_v4.data.panel import Panel
from technic_v4.errors import DataError


@dataclass(frozen=True)
class Source:
    """Where a task reads its bars: the driver's settings, store file and store version."""

    settings: Settings
    store: Path
    identity: tuple[str | None, int]


_markets: dict[tuple[str, tuple[str | None, int]], MarketData] = {}
_markets_lock = threading.Lock()


def _market(src: Source) -> MarketData:
    """The worker process's MarketData over the driver's store (one per store version)."""
    from technic_v4.data.store import Store

    key = (str(src.store), src.identity)
    with _markets_lock:
        md = _markets.get(key)
        if md is None:
            for old in [k for k in _markets if k[0] == key[0]]:
                _markets.pop(old).close()
            settings = src.settings.model_copy(update={"redis_url": None, "use_ray": False})
            md = MarketData(settings=settings, store=Store(src.store))
            _markets[key] = md
    got = md.store.identity()
    if got != src.identity:
        raise DataError(f"the store {src.store} changed during the replay (version {got[1]}, "
                        f"the replay read {src.identity[1]}): run the replay again")
    return md


TASK_LISTINGS = 2048  # listings a task loads at once (~0.5 GB of bars over 20 years)


def load_chunks(src: Source, specs: list[ChunkSpec], plan: Plan) -> Iterator[_Chunk]:
    """The chunks' views from the store: their listings' bars as of ``plan.as_of`` (every
    stored bar: the driver's panel width) in one load (a store query reads the bars table
    once, whatever the number of listings), each chunk cut by ``materialize``."""
    md = _market(src)
    ref_sids = pd.Index(md.reference()["sid"].to_numpy())
    uniq = np.unique(np.concatenate([np.asarray(sp.sids) for sp in specs]))
    pos = ref_sids.get_indexer(uniq)
    if (pos < 0).any():
        raise DataError(f"listings {uniq[pos < 0][:5].tolist()} are not in the store "
                        f"{src.store}: the store changed during the replay")
    panel: Panel = md.symbols_panel(pos, plan.as_of, plan.width, plan.adjust)
    for sp in specs:
        rows = np.searchsorted(uniq, np.asarray(sp.sids)).astype(np.int64)
        yield materialize(panel, rows, sp, plan)


def load_chunk(src: Source, spec: ChunkSpec, plan: Plan) -> _Chunk:
    """One chunk's views from the store (:func:`load_chunks`)."""
    return next(load_chunks(src, [spec], plan))


def _task(fn: Callable[[_Chunk, Any], Any], specs: list[ChunkSpec], ctx: Any, plan: Plan,
          src: Source) -> tuple[str, float, list[Any]]:
    """A group of chunks on a worker: (its node id, the worker's peak RSS in MB, ``fn``'s
    results in order)."""
    import resource

    import ray

    got = [fn(ch, ctx) for ch in load_chunks(src, specs, plan)]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ray.get_runtime_context().get_node_id(), rss, got


def groups(specs: list[ChunkSpec], listings: int = TASK_LISTINGS) -> list[list[ChunkSpec]]:
    """Consecutive specs in groups of at most ``listings`` listings (one spec at least): a
    task per group, one store read per task."""
    out: list[list[ChunkSpec]] = []
    n = 0
    for sp in specs:
        if out and n + len(sp.sids) <= listings:
            out[-1].append(sp)
            n += len(sp.sids)
        else:
            out.append([sp])
            n = len(sp.sids)
    return out


class RayChunkRunner(ChunkRunner):
    """The :class:`~technic_v4.backtest.replay.ChunkRunner` interface on Ray (module
    docstring). ``stats()``: runner, address, nodes and CPUs of the cluster, tasks run, the
    node ids that ran them, tasks/s over the ``map`` calls, the largest peak RSS of a worker
    process that ran one."""

    name = "ray"

    def __init__(self, data: MarketData, in_flight: int | None = None,
                 task_listings: int | None = None) -> None:
        import ray  # (no panel in memory: ChunkRunner.__init__ is not called)

        self.source = Source(data.settings, data.store.path, data.store.identity())
        self.address = data.settings.ray_address
        res = ray.cluster_resources()
        self.cpus = max(1, int(res.get("CPU", 1)))
        self.nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        self.in_flight = in_flight or 2 * self.cpus
        self.task_listings = task_listings or TASK_LISTINGS
        self.tasks = 0
        self.seconds = 0.0
        self.node_ids: set[str] = set()
        self.worker_rss_mb = 0.0
        # Spread over the nodes: a task reads its bars from the store, so no node holds data
        # another needs (Ray's default packs tasks onto the driver's node first).
        self._remote = ray.remote(_task).options(scheduling_strategy="SPREAD")

    def map(self, fn: Callable[[_Chunk, Any], Any], specs: list[ChunkSpec], ctx: Any,
            plan: Plan, tick: _Ticker, step: str) -> Iterator[Any]:
        import ray

        t0 = time.perf_counter()
        ctx_ref, plan_ref, src_ref = ray.put(ctx), ray.put(plan), ray.put(self.source)
        total = sum(len(sp.sids) for sp in specs)
        pending: deque[tuple[list[int], Any]] = deque()
        todo = iter(groups(specs, self.task_listings))
        done = 0
        try:
            while True:
                for grp in todo:
                    pending.append(([len(sp.sids) for sp in grp], self._remote.remote(
                        fn, grp, ctx_ref, plan_ref, src_ref)))
                    if len(pending) >= self.in_flight:
                        break
                if not pending:
                    break
                sizes, ref = pending.popleft()
                node, rss, got = ray.get(ref)
                self.worker_rss_mb = max(self.worker_rss_mb, rss)
                self.tasks += 1
                self.node_ids.add(node)
                for n, one in zip(sizes, got, strict=True):
                    done += n
                    yield one
                    tick(step, done, total)
        finally:
            for _, ref in pending:  # cancelled, or an error: stop what is queued or running
                ray.cancel(ref)
            self.seconds += time.perf_counter() - t0

    def stats(self) -> dict[str, Any]:
        return {"runner": self.name, "address": self.address or "local", "nodes": self.nodes,
                "cpus": self.cpus, "tasks": self.tasks, "nodes_used": len(self.node_ids),
                "node_ids": sorted(self.node_ids), "seconds": round(self.seconds, 6),
                "tasks_per_s": round(self.tasks / self.seconds, 3) if self.seconds else None,
                "worker_peak_rss_mb": round(self.worker_rss_mb, 1),
                "fallback_reason": None}


def connect(data: MarketData) -> tuple[RayChunkRunner | None, str | None]:
    """A Ray runner for ``data``'s settings (connected as the scan connects: ``ray_address``
    or a local Ray of ``max_workers`` CPUs), or None and why Ray is unusable (not installed,
    the cluster unreachable: logged once, as the scan does; the replay then runs locally)."""
    from technic_v4.execution import get_backend

    backend = get_backend(data.settings)  # starts or joins Ray; falls back once with a reason
    if backend.name != "ray":
        return None, backend.fallback_reason or "Ray is unavailable; running locally"
    return RayChunkRunner(data), None


@dataclass(frozen=True)
class Outline(Panel):
    """The driver's panel when the tasks load their own bars: every listing (reference
    order, as ``MarketData.panel``) and the width, without bars (the arrays are read-only
    broadcasts of NaN / -1: no memory). ``rows()`` loads the asked rows from the store (the
    replay reads SPY's row for the regime), the same bits as the whole panel's rows."""

    data: MarketData | None = None

    def rows(self, idx: np.ndarray) -> Panel:
        assert self.data is not None
        return self.data.symbols_panel(np.asarray(idx, dtype=np.int64), self.as_of,
                                       self.close.shape[1], self.adjust)


def outline(data: MarketData, as_of: dt.date, n_bars: int, adjust: str = adj.DEFAULT_MODE
            ) -> Outline:
    """What ``data.panel(as_of, n_bars, adjust=adjust)`` would be, without its bars (its
    width capped at the stored sessions as ``panel`` caps it)."""
    width = min(n_bars, max(1, data.max_bars()))
    ref = data.reference()
    n = len(ref)
    nan = np.broadcast_to(np.float64(np.nan), (n, width))
    return Outline(symbols=ref["Symbol"].to_numpy(object), sids=ref["sid"].to_numpy(np.int32),
                   open=nan, high=nan, low=nan, close=nan, volume=nan,
                   day=np.broadcast_to(np.int32(-1), (n, width)), as_of=as_of,
                   adjust=adj.check_mode(adjust), actions=data.actions(), data=data)


__all__ = ["Outline", "RayChunkRunner", "Source", "connect", "groups", "load_chunk",
           "load_chunks", "outline"]
