"""Prometheus metrics of one service instance (its own registry: two apps in one process never
share or clash).

Counted as they happen: scans by outcome, submissions by how they were served, scan and per-stage
durations (from ``stats["stages"][i]["seconds"]``), result-cache lookups per layer, Redis errors.
Read at scrape time from the data layer: vendor requests by endpoint, bars served per layer and
L1 lookups (``MarketData.stats()``), store size and version, and jobs by state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from technic_v4.data.cache import LAYERS
from technic_v4.data.market import MarketData

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0, 60.0, 120.0, 300.0)


def market_stats(market: MarketData) -> dict[str, Any]:
    """``market.stats()`` (thread-safe: the L1 cache and the counters are read under locks)."""
    return market.stats()


class _DataCollector(Collector):
    def __init__(self, market: MarketData, active: Callable[[], dict[str, int]],
                 retained: Callable[[], int]) -> None:
        self.market = market
        self.active = active
        self.retained = retained

    def collect(self) -> Iterator[Metric]:
        st = market_stats(self.market)
        vendor = CounterMetricFamily("technic_vendor_requests", "Data-vendor requests by "
                                     "endpoint since start-up.", labels=["endpoint"])
        for endpoint, n in sorted(st["api_calls"].items()):
            vendor.add_metric([endpoint], float(n))
        yield vendor
        served = CounterMetricFamily("technic_cache_bars_served", "Bars (symbol-sessions) "
                                     "served per layer: memory (L1), redis (L3), store (L2), "
                                     "vendor.",
                                     labels=["layer"])
        cum = st["cumulative"]
        for layer in LAYERS:
            served.add_metric([layer], float(cum["served_by"].get(layer, 0)))
        yield served
        lookups = CounterMetricFamily("technic_cache_lookups", "Cache lookups per layer and "
                                      "result (bars for the data layers).",
                                      labels=["layer", "result"])
        mem = st["memory_lookups"]
        lookups.add_metric(["l1_memory", "hit"], float(mem["hits"]))
        lookups.add_metric(["l1_memory", "miss"], float(mem["misses"]))
        l3 = st.get("redis")
        if l3:  # the data layer's shared L3 (sessions, reference, panels)
            lookups.add_metric(["l3_redis", "hit"], float(l3.get("hits", 0)))
            lookups.add_metric(["l3_redis", "miss"], float(l3.get("misses", 0)))
        lookups.add_metric(["bars", "hit"], float(cum["hits"]))
        lookups.add_metric(["bars", "miss"], float(cum["misses"]))
        yield lookups
        yield GaugeMetricFamily("technic_cache_hit_rate_percent", "Share of bars served "
                                "without a vendor request since start-up.",
                                value=float(cum["hit_rate"]))
        yield GaugeMetricFamily("technic_memory_cache_bytes", "Bytes held by the L1 cache.",
                                value=float(st["cache_bytes"]))
        yield GaugeMetricFamily("technic_store_size_bytes", "Size of the local store on disk.",
                                value=float(st["store"]["size_bytes"]))
        yield GaugeMetricFamily("technic_store_version", "Write counter of the local store.",
                                value=float(st["store"]["version"]))
        jobs = GaugeMetricFamily("technic_active_jobs", "Scan jobs queued or running.",
                                 labels=["state"])
        for state, n in self.active().items():
            jobs.add_metric([state], float(n))
        yield jobs
        yield GaugeMetricFamily("technic_jobs_retained", "Scan jobs held (finished ones are "
                                "evicted oldest first).", value=float(self.retained()))


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scans = Counter("technic_scans", "Scan jobs by final outcome.", ["outcome"],
                             registry=r)
        self.requests = Counter("technic_scan_requests", "Scan submissions by how they were "
                                "served: computed, shared, memory, redis, rejected.",
                                ["source"], registry=r)
        self.scan_seconds = Histogram("technic_scan_duration_seconds", "Wall time of computed "
                                      "scans.", buckets=STAGE_BUCKETS, registry=r)
        self.stage_seconds = Histogram("technic_scan_stage_seconds", "Seconds per scan stage "
                                       "(stats['stages'][i]['seconds']).", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.result_cache = Counter("technic_result_cache_lookups", "Scan-result cache lookups "
                                    "per layer (memory, redis) and result.",
                                    ["layer", "result"], registry=r)
        self.redis_errors = Counter("technic_redis_errors", "Failed Redis operations.", ["op"],
                                    registry=r)
        from technic_v4.pipeline import STAGES

        for o in ("done", "failed", "cancelled"):
            self.scans.labels(o)
        for s in ("computed", "shared", "memory", "redis", "rejected"):
            self.requests.labels(s)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for layer in ("memory", "redis"):
            for res in ("hit", "miss"):
                self.result_cache.labels(layer, res)

    def bind(self, market: MarketData, active: Callable[[], dict[str, int]],
             retained: Callable[[], int]) -> None:
        self.registry.register(_DataCollector(market, active, retained))

    def on_lookup(self, layer: str, hit: bool) -> None:
        self.result_cache.labels(layer, "hit" if hit else "miss").inc()

    def on_redis_error(self, op: str) -> None:
        self.redis_errors.labels(op).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
