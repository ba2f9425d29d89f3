"""Scan jobs: a bounded worker pool, shared computations, cancellation, progress events.

- One job per distinct (config, data version) at a time: an identical request while a job is
  queued, running or retained as done joins it (``served_by="shared"``); a result in the result
  cache becomes a job that is done at once (``"memory"`` / ``"redis"``).
- The key is taken *after* deciding whether the store is current: when the provider has a
  session the store lacks, the job is keyed by that target session (``pending:<session>``),
  skips the result cache, and its scan brings the store current first; the result is then
  cached under the data version it read. Yesterday's result is never served after a new session.
- A shared job counts its requesters; ``cancel`` stops it only when every one has cancelled.
- At most ``max_queued`` jobs wait; beyond that :class:`Busy` (HTTP 429 with Retry-After).
  A worker runs a scan once the shared :class:`Admission` has a slot and memory for it.
- Finished jobs are retained up to ``max_jobs``; the oldest finished ones are evicted first.
- Listeners (SSE streams, long polls) receive events through their own asyncio loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, ScanCancelled, TechnicError
from technic_v4.service.admission import Admission, Busy, estimate_bytes
from technic_v4.service.cache import DataVersion, ResultCache, result_key
from technic_v4.service.metrics import ServiceMetrics
from technic_v4.service.progress import Progress, Throughput
from technic_v4.service.results import Outcome

log = logging.getLogger(__name__)

TERMINAL = frozenset({"done", "failed", "cancelled"})
ProgressHook = Callable[[str, str, int, int], None]  # (job_id, stage, done, total)


__all__ = ["TERMINAL", "Busy", "Job", "JobManager", "ProgressHook", "ShuttingDown"]


# Listings assumed when the store cannot size a scan (about a whole US market).
FALLBACK_LISTINGS = 6000


def _internal_error(job: Job) -> dict[str, Any]:
    return {"error": "internal_error", "field": None,
            "message": f"the scan failed unexpectedly (job {job.id}); the server log has the "
            "details"}


class ShuttingDown(Exception):
    """The service is stopping and takes no new scans."""


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class Job:
    id: str
    key: str
    config: ScanConfig
    data_version: str
    progress: Progress
    source: str = "computed"
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    outcome: Outcome | None = None
    error: dict[str, Any] | None = None
    requests: int = 1
    cancels: int = 0  # requesters that asked to cancel; the job stops when all have
    future: Future[None] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    finished_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[tuple[str, dict[str, Any]]]]] \
        = field(default_factory=list)
    last_publish: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def status(self) -> dict[str, Any]:
        """A consistent snapshot (takes the job's lock)."""
        with self.lock:
            return self._status()

    def _status(self) -> dict[str, Any]:
        base = f"/v1/scan/{self.id}"
        d: dict[str, Any] = {
            # Once done: the key and version of the data the scan read (a job submitted while
            # the store was behind is keyed "pending:<session>" until then).
            "id": self.id, "state": self.state,
            "key": self.key if self.outcome is None else self.outcome.key,
            "data_version": self.data_version if self.outcome is None
            else self.outcome.data_version,
            "config": self.config.model_dump(mode="json"),
            "created_at": _iso(self.created), "started_at": _iso(self.started),
            "finished_at": _iso(self.finished), "progress": self.progress.snapshot(),
            "requests": self.requests, "cancel_requests": self.cancels,
            "watchers": len(self.listeners),
            "source": self.source,
            "rows": None if self.outcome is None else len(self.outcome),
            "message": None if self.outcome is None else self.outcome.message,
            "error": self.error,
            "links": {"self": base, "results": f"{base}/results",
                      "csv": f"{base}/results?format=csv", "events": f"{base}/events"},
        }
        return d

    def end_locked(self, state: str, error: dict[str, Any] | None,
                   stages: list[dict[str, Any]] | None) -> None:
        """Set the final state (caller holds ``lock``; the outcome is set by the caller),
        finish the progress (with the run's ``stages``) and tell every listener."""
        self.state = state
        self.error = error
        self.finished = time.time()
        self.progress.finish(stages)
        self._publish_locked(state)
        self.listeners.clear()
        self.finished_event.set()

    # -- events ------------------------------------------------------------------------------
    def _publish_locked(self, event: str) -> None:
        payload = self._status()
        dead = []
        for loop, q in self.listeners:
            try:
                loop.call_soon_threadsafe(q.put_nowait, (event, payload))
            except RuntimeError:  # that listener's loop is closed
                dead.append((loop, q))
        for item in dead:
            self.listeners.remove(item)
        self.last_publish = time.monotonic()

    def subscribe(self) -> tuple[asyncio.Queue[tuple[str, dict[str, Any]]], dict[str, Any]]:
        """From a running event loop: a queue of (event, status) and the status right now.

        When the job is already finished the queue stays empty; the status is final.
        """
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        with self.lock:
            if not self.terminal:
                self.listeners.append((loop, q))
            return q, self._status()

    def unsubscribe(self, q: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        with self.lock:
            self.listeners[:] = [(lp, x) for lp, x in self.listeners if x is not q]

    def announce_shutdown(self) -> None:
        """Tell every listener the server is stopping (they answer with the status now)."""
        with self.lock:
            self._publish_locked("shutdown")
            self.listeners.clear()


class JobManager:
    def __init__(self, market: MarketData, cache: ResultCache, metrics: ServiceMetrics, *,
                 max_running: int, max_queued: int, max_jobs: int,
                 max_result_bytes: int = 512 << 20, progress_interval: float = 0.1,
                 hook: ProgressHook | None = None, admission: Admission | None = None,
                 behind: Callable[[], dt.date | None] | None = None,
                 on_store_change: Callable[[], None] | None = None) -> None:
        if max_running < 1 or max_queued < 0 or max_jobs < max_running + max_queued:
            raise ConfigError("service", "need max_running >= 1, max_queued >= 0 and max_jobs "
                              ">= max_running + max_queued")
        self.market = market
        self.cache = cache
        self.metrics = metrics
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_jobs = max_jobs
        self.max_result_bytes = max_result_bytes
        self.progress_interval = progress_interval
        self.hook = hook
        self.admission = admission or Admission(max_running, 1 << 62)
        self.behind = behind
        self.on_store_change = on_store_change
        self.throughput = Throughput()
        self.data_version = DataVersion(market)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="technic-scan")
        self._closing = False
        self.computations = 0  # pipeline.scan calls started (tests and /metrics)

    # -- queries -----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {"queued": states.count("queued"), "running": states.count("running")}

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the soonest ETA of the running scans."""
        etas = []
        for j in self.jobs():
            if j.state == "running":
                eta = j.status()["progress"]["eta_seconds"]
                if eta is not None:
                    etas.append(eta)
        return max(1, math.ceil(min(etas))) if etas else 2

    def latest_row(self, symbol: str, job_id: str | None = None
                   ) -> tuple[Job, dict[str, Any]] | None:
        """The newest finished scan's row for ``symbol`` (or that of job ``job_id``)."""
        with self._lock:
            done = [j for j in self._jobs.values() if j.state == "done" and j.outcome is not None]
        if job_id is not None:
            done = [j for j in done if j.id == job_id]
        for j in sorted(done, key=lambda j: j.finished or 0.0, reverse=True):
            assert j.outcome is not None
            row = j.outcome.row(symbol)
            if row is not None:
                return j, row
        return None

    # -- submission ---------------------------------------------------------------------------
    def submit(self, config: ScanConfig) -> tuple[Job, str]:
        """The job serving ``config`` and how: computed / shared / memory / redis."""
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        target = self.behind() if self.behind is not None else None
        version = f"pending:{target}" if target is not None else self.data_version.current()
        key = result_key(config, version)
        with self._lock:
            job = self._joinable(key)
            if job is not None:
                return job, "shared"
        out: Outcome | None = None
        source = "computed"
        if target is None:  # a cached result is only as current as the store
            out = self.cache.get_memory(key)
            source = "memory"
            if out is None:
                out = self.cache.get_redis(key)
                source = "redis"
                if out is not None:
                    self.cache.put_memory(out)
        with self._lock:
            job = self._joinable(key)
            if job is not None:
                return job, "shared"
            if out is not None:
                job = self._new_job(key, config, version, source)
                job.state = "done"
                job.outcome = out
                job.started = job.finished = job.created
                job.progress.start()
                job.progress.finish(out.stats.get("stages"))
                job.finished_event.set()
                self.metrics.requests.labels(source).inc()
                self._evict()
                return job, source
            act = self.active()
            n_active = act["queued"] + act["running"]
            if n_active >= self.max_running + self.max_queued:
                self.metrics.requests.labels("rejected").inc()
                retry = self.retry_after()
                raise Busy(f"{n_active} scans are queued or running, the most this service "
                           f"takes; retry in {retry} s", retry, n_active)
            job = self._new_job(key, config, version, "computed")
            self.metrics.requests.labels("computed").inc()
            job.future = self._pool.submit(self._run, job)
            self._evict()
            return job, "computed"

    def _joinable(self, key: str) -> Job | None:
        job = self._by_key.get(key)
        if job is None or job.state in ("failed", "cancelled") or job.cancel_event.is_set():
            return None
        with job.lock:
            job.requests += 1
        self.metrics.requests.labels("shared").inc()
        return job

    def _new_job(self, key: str, config: ScanConfig, version: str, source: str) -> Job:
        job = Job(id=uuid.uuid4().hex, key=key, config=config, data_version=version,
                  progress=Progress(self.throughput), source=source)
        self._jobs[job.id] = job
        self._by_key[key] = job
        return job

    def _evict(self) -> None:
        """Drop the oldest finished jobs while more than ``max_jobs`` are kept, or while the
        results they hold exceed ``max_result_bytes`` (the newest result always stays).
        Active jobs are never dropped. Caller holds ``self._lock``."""
        def held() -> int:
            outs = {id(j.outcome): j.outcome for j in self._jobs.values() if j.outcome}
            return sum(o.nbytes for o in outs.values())

        finished = sorted((j for j in self._jobs.values() if j.terminal),
                          key=lambda j: j.finished or j.created)
        total = held()
        for j in finished:
            over_count = len(self._jobs) > self.max_jobs
            over_bytes = total > self.max_result_bytes and j is not finished[-1]
            if not (over_count or over_bytes):
                break
            del self._jobs[j.id]
            for k in [k for k, v in self._by_key.items() if v is j]:  # its key and any alias
                del self._by_key[k]
            total = held()

    # -- cancellation ------------------------------------------------------------------------
    def cancel(self, job: Job) -> bool:
        """One requester of ``job`` withdraws; the job stops once every requester has (a shared
        job keeps running for the others). False when it had already finished."""
        with self._lock, job.lock:
            if job.terminal:
                return False
            job.cancels = min(job.cancels + 1, job.requests)
            if job.cancels < job.requests and not self._closing:
                job._publish_locked("progress")
                return True
            job.cancel_event.set()
            if self._by_key.get(job.key) is job:
                del self._by_key[job.key]
            if job.state == "queued" and job.future is not None and job.future.cancel():
                self._finish_locked(job, "cancelled", None, None)
        return True

    # -- the worker --------------------------------------------------------------------------
    def cost(self, config: ScanConfig) -> int:
        """Estimated peak bytes of scanning ``config`` (see ``admission.py``): the panel is
        loaded for every listing, whatever ``max_symbols`` keeps. When the store cannot be
        read (the scan will report why), a whole market is assumed: never nothing."""
        try:
            _, st = self.data_version.status()
            listings = len(self.market.reference())
            # lookback_days=None asks for every stored bar: sized as the longest lookback.
            sessions = int(st["sessions"]) or min(config.bars_needed, 5000)
        except Exception as e:  # noqa: BLE001 - an unreadable store: the scan reports it
            s = self.market.settings
            listings = max(FALLBACK_LISTINGS, s.synthetic_listings
                           if s.data_provider == "synthetic" else 0)
            log.warning("cannot size the scan from the store (%s: %s); reserving memory for "
                        "%s listings", type(e).__name__, e, f"{listings:,}")
            return estimate_bytes(listings, min(config.bars_needed, 5000))
        return estimate_bytes(listings, min(config.bars_needed, sessions))

    def _run(self, job: Job) -> None:
        try:
            with self.admission.enter(self.cost(job.config),
                                      job.cancel_event.is_set) as entered:
                if not entered:
                    with job.lock:
                        self._finish_locked(job, "cancelled", None, None)
                    return
                self._run_admitted(job)
        finally:
            with job.lock:  # whatever raised, no job is left queued or running
                if not job.terminal:
                    log.error("scan %s ended without a result; marked failed", job.id)
                    self._finish_locked(job, "failed", None, _internal_error(job))

    def _run_admitted(self, job: Job) -> None:
        with job.lock:
            if job.cancel_event.is_set():
                self._finish_locked(job, "cancelled", None, None)
                return
            job.state = "running"
            job.started = time.time()
            job.progress.start()
            job._publish_locked("progress")
        with self._lock:
            self.computations += 1
        log.info("scan %s started", job.id)

        def progress(stage: str, done: int, total: int) -> None:
            with job.lock:
                completed = job.progress.tick(stage, done, total)
                if completed or time.monotonic() - job.last_publish >= self.progress_interval:
                    job._publish_locked("progress")
            if self.hook is not None:
                self.hook(job.id, stage, done, total)

        t0 = time.perf_counter()
        try:
            res = pipeline.scan(job.config, self.market, progress=progress,
                                cancel=job.cancel_event.is_set)
        except ScanCancelled:
            with job.lock:
                self._finish_locked(job, "cancelled", None, None)
            log.info("scan %s cancelled", job.id)
            return
        except TechnicError as e:
            self._fail(job, {"error": type(e).__name__, "message": str(e),
                             "field": getattr(e, "field", None)})
            return
        except Exception:
            log.exception("scan %s failed", job.id)
            self._fail(job, _internal_error(job))
            return
        try:
            self._finish_scan(job, res, time.perf_counter() - t0)
        except TechnicError as e:  # e.g. the store deleted by another process meanwhile
            log.warning("scan %s failed after the scan: %s", job.id, e)
            self._fail(job, {"error": type(e).__name__, "message": str(e),
                             "field": getattr(e, "field", None)})
        except Exception:
            log.exception("scan %s failed after the scan", job.id)
            self._fail(job, _internal_error(job))

    def _finish_scan(self, job: Job, res: pipeline.ScanResult, seconds: float) -> None:
        """Record, cache and publish a finished scan."""
        self.metrics.scan_seconds.observe(seconds)
        stages = res.stats.get("stages", [])
        for st in stages:
            self.metrics.stage_seconds.labels(st["stage"]).observe(float(st["seconds"]))
        self.throughput.observe(stages)
        # Key the result by the data the scan read (it may have updated the store, another
        # process may have written it since): the store identity the scan reports. When that
        # is not the store's identity now, or unknown, its data version cannot be computed any
        # more: the result is served to this job's requesters and not cached.
        read = (res.stats.get("store_id"), res.stats.get("store_version"))
        now = self.data_version.snapshot()
        cacheable = read[1] is not None and read == now.identity
        if cacheable:
            version = now.version
            key = job.key if version == job.data_version else result_key(job.config, version)
        else:
            version = f"unsettled:{job.id}"
            key = result_key(job.config, version)
            log.info("scan %s: the store moved while it was read; its result is not cached",
                     job.id)
        out = Outcome(res.frame, res.message, res.stats, key, version)
        if cacheable:
            self.cache.put_memory(out)
            self.cache.put_redis(out)
        if self.on_store_change is not None:
            self.on_store_change()
        with self._lock:
            if not cacheable and self._by_key.get(job.key) is job:
                del self._by_key[job.key]  # not a result of the data ``job.key`` names
            if cacheable and key != job.key:
                self._by_key.setdefault(key, job)
            with job.lock:
                self._finish_locked(job, "done", out, None)
            self._evict()
        log.info("scan %s done: %s", job.id, res.message)

    def _fail(self, job: Job, error: dict[str, Any]) -> None:
        with job.lock:
            self._finish_locked(job, "failed", None, error)

    def _finish_locked(self, job: Job, state: str, out: Outcome | None,
                       error: dict[str, Any] | None) -> None:
        """Set the final state (caller holds ``job.lock``) and tell every listener."""
        self.metrics.scans.labels(state).inc()
        job.outcome = out
        job.end_locked(state, error, None if out is None else out.stats.get("stages"))

    # -- lifecycle ---------------------------------------------------------------------------
    def drain(self) -> None:
        """The server is stopping: take no new scans, answer every waiting client now."""
        self._closing = True
        for j in self.jobs():
            if not j.terminal:
                j.announce_shutdown()

    def shutdown(self) -> None:
        """Cancel every active scan and wait for the workers."""
        self._closing = True
        for j in self.jobs():
            if not j.terminal:
                self.cancel(j)
        self._pool.shutdown(wait=True, cancel_futures=True)
