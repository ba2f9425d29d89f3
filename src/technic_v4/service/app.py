"""The HTTP service: FastAPI app factory and ``technic serve``.

``create_app(market, settings, options)`` builds an app around one MarketData (tests inject a
small market; ``run`` uses the process-wide ``data_engine.market()``). Routes:

    GET  /health                      store and Redis status (never needs the API key; answered
                                      from a status refreshed in the background)
    GET  /version                     technic and library versions
    GET  /v1/options                  valid sectors, industries, types, columns, stages, defaults
    POST /v1/scan                     ScanConfig JSON -> 202 + job (shared when identical)
    POST /v1/screens/validate         check where/columns/sort_by/preset: keys, clauses, bars
    GET  /v1/screens/presets          the preset screens and their expressions
    GET|POST /v1/screens, GET|PUT|DELETE /v1/screens/{name}   saved screens (daily run)
    POST /v1/screens/{name}/run       scan with a saved screen now -> 202 + job
    GET|POST /v1/watchlists, GET|PUT|DELETE /v1/watchlists/{name}
    GET|POST /v1/alerts (targets, secrets as "set", and dead letters), DELETE /v1/alerts/{name},
    POST /v1/alerts/{name}/test       send a sample
    GET  /v1/scans                    retained jobs, newest first
    GET  /v1/scan/{id}[?wait=S]       state and multi-stage progress (long-poll with ``wait``)
    GET  /v1/scan/{id}/results        JSON (default) or CSV (?format=csv or Accept: text/csv)
    GET  /v1/scan/{id}/events         Server-Sent Events: progress..., then done/failed/cancelled
    DELETE /v1/scan/{id}              cancel
    GET  /v1/backtest/options         stored range, default range, horizons, rank columns
    POST /v1/backtest                 a screen replayed over from..to -> 202 + job (backtests.py)
    GET  /v1/backtests                retained backtest jobs, newest first
    GET  /v1/backtest/{id}[?wait=S]   state, progress (step, done, total, ETA); when done the
                                      results: summaries, tables and the report's SVG charts
    GET  /v1/backtest/{id}/events     Server-Sent Events, as for scans
    GET  /v1/backtest/{id}/charts/{name}.svg   one chart
    GET  /v1/backtest/{id}/frames/{name}       per-session rows: paged JSON or ?format=parquet
    DELETE /v1/backtest/{id}          cancel
    GET  /v1/symbol/{ticker}          OHLCV history, SMA20/50/200 and Bollinger series, scan row
    GET  /v1/universe                 listings by sector and type, pre-screen outcome
    GET  /metrics                     Prometheus text format
    GET  /                            the web page (static files in ``service/static``)
    GET  /docs                        Swagger UI, self-hosted (assets of ``fastapi-offline``)

Routes are thin: the answers come from ``queries.py`` (plain functions of a MarketData) and
``jobs.py``; heavy work passes ``admission.py`` (shared slots and a memory budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import math
import re
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from technic_v4 import __version__, data_engine
from technic_v4.config.scan import ScanConfig
from technic_v4.config.settings import Settings
from technic_v4.daily import service as daily
from technic_v4.daily.schedule import Scheduler
from technic_v4.daily.state import NotFound, StateStore
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, DataError
from technic_v4.pipeline import COLUMNS, STAGES, check_bars
from technic_v4.service import backtests as bt
from technic_v4.service import models, queries
from technic_v4.service.admission import Admission, Busy, TooLarge
from technic_v4.service.cache import ResultCache
from technic_v4.service.guard import Guard
from technic_v4.service.jobs import TERMINAL, Job, JobManager, ProgressHook, ShuttingDown
from technic_v4.service.metrics import CONTENT_TYPE, ServiceMetrics
from technic_v4.service.results import dumps
from technic_v4.service.upkeep import Freshness, Health
from technic_v4.terms.language import ScreenError
from technic_v4.universe import gics

log = logging.getLogger("technic_v4.service")

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8502
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_TICKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,14}$")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Needed when the service runs with TECHNIC_API_KEY.")
KEYED = [Security(API_KEY_HEADER)]  # declares the scheme in OpenAPI; Guard checks the key


def _docs_assets() -> Path | None:
    """Swagger UI's files as the ``fastapi-offline`` package ships them (None: not installed)."""
    try:
        path = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return path if (path / "swagger-ui-bundle.js").exists() else None


@dataclass(frozen=True)
class ServiceOptions:
    """Limits and knobs of one service instance."""

    max_running_scans: int = 2  # worker threads computing scans
    max_queued_scans: int = 8  # more accepted while they wait; beyond: 429
    max_jobs: int = 200  # retained jobs; oldest finished evicted first
    max_body_bytes: int = 64 * 1024
    schedule: bool = False  # run the daily scheduler (``technic serve``: TECHNIC_SCHEDULE_ENABLED)
    result_cache_entries: int = 32  # in-process result cache (LRU) ...
    result_cache_mb: int = 256  # ... and its memory bound
    max_result_mb: int = 512  # results held by retained jobs; oldest finished evicted first
    redis_ttl_seconds: int = 7 * 24 * 3600
    redis_prefix: str = "technic:v1:"
    progress_interval: float = 0.1  # min seconds between SSE progress events (stage ends: all)
    heartbeat_seconds: float = 15.0  # SSE keep-alive comment interval
    max_wait_seconds: float = 60.0  # bound of ?wait= long polls and /v1/universe's wait
    allowed_hosts: tuple[str, ...] | None = None  # Host header check (DNS rebinding)
    warm_store: bool = False  # bring the store up to date in the background at start-up
    refresh_interval_s: float | None = None  # background freshness check (default: setting)
    memory_budget_mb: int | None = None  # heavy requests' memory (default: setting)
    health_interval_s: float = 2.0  # background refresh of /health's status
    max_queued_backtests: int = 2  # backtests waiting while one runs; beyond: 429
    max_backtests: int = 16  # retained backtest jobs (with frames and charts) ...
    max_backtest_mb: int = 1024  # ... and the reports they hold; oldest finished evicted first


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}
        self.extra = extra or {}


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>technic API</title>
<link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json",
                    headers=headers)


class Service:
    """Everything one app instance owns."""

    def __init__(self, market: MarketData, settings: Settings, options: ServiceOptions,
                 hook: ProgressHook | None) -> None:
        self.market = market
        self.settings = settings
        self.options = options
        self.metrics = ServiceMetrics()
        self.cache = ResultCache(options.result_cache_entries, settings.redis_url,
                                 options.redis_prefix, options.redis_ttl_seconds,
                                 on_lookup=self.metrics.on_lookup,
                                 on_error=self.metrics.on_redis_error,
                                 max_bytes=options.result_cache_mb << 20)
        budget = options.memory_budget_mb or settings.memory_budget_mb
        self.admission = Admission(options.max_running_scans, budget << 20)
        self.jobs = JobManager(market, self.cache, self.metrics,
                               max_running=options.max_running_scans,
                               max_queued=options.max_queued_scans, max_jobs=options.max_jobs,
                               max_result_bytes=options.max_result_mb << 20,
                               progress_interval=options.progress_interval, hook=hook,
                               admission=self.admission)
        self.backtests = bt.BacktestManager(
            market, budget_bytes=budget << 20, max_queued=options.max_queued_backtests,
            max_jobs=options.max_backtests, max_result_bytes=options.max_backtest_mb << 20,
            progress_interval=options.progress_interval, hook=hook)
        self.health = Health(market, self.jobs.data_version, self.cache,
                             settings.data_provider, options.health_interval_s)
        self.freshness = Freshness(market, self.jobs.data_version,
                                   options.refresh_interval_s or settings.refresh_interval_s,
                                   on_change=self.health.changed)
        self.health.freshness = self.freshness
        self.jobs.behind = self.freshness.behind
        self.jobs.on_store_change = self.store_changed
        self.metrics.bind(market, self.jobs.active, lambda: len(self.jobs.jobs()))
        self.universes: dict[tuple[str, str], dict[str, Any]] = {}  # (data version, as-of)
        self.draining: asyncio.Event | None = None  # set on the event loop at start-up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: StateStore | None = None
        self.scheduler: Scheduler | None = None
        self._scheduler_thread = threading.Thread()

    @property
    def state(self) -> StateStore:
        """The saved screens' store (opened on first use)."""
        if self._state is None:
            self._state = StateStore(self.settings.data_dir)
        return self._state

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"unknown or expired scan id {job_id!r} (the "
                           f"newest {self.options.max_jobs} scans are kept)")
        return job

    def submit(self, config: ScanConfig) -> tuple[Job, str]:
        """Validate what needs the store (as-of, memory), then submit; runs in a worker thread."""
        if config.as_of_date is not None or config.screen().bars > 1:
            try:
                day = self.market.resolve_as_of(config.as_of_date)
                # A screen term needing more history than stored: 422 now, not a failed job.
                check_bars(config, min(self.market.max_bars(),
                                       len(self.market.sessions(day))), day)
            except ConfigError as e:
                raise ApiError(422, "invalid_request", str(e), e.field) from None
            except DataError:
                pass  # empty store: the scan fills it first
        try:
            self.admission.check(self.jobs.cost(config), "this scan")
        except TooLarge as e:
            raise ApiError(422, "invalid_request", str(e), "lookback_days") from None
        try:
            return self.jobs.submit(config)
        except Busy as e:
            raise busy(e) from None
        except ShuttingDown as e:
            raise ApiError(503, "shutting_down", str(e), headers={"Retry-After": "5"}) from None

    def store_changed(self) -> None:
        """A scan ended (its update may have changed the store)."""
        self.freshness.attempted()
        self.health.changed()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.draining = asyncio.Event()
        self.health.start()
        self.freshness.start(update_now=self.options.warm_store)
        if self.options.schedule:
            self.scheduler = Scheduler(self.market, self.state)
            self._scheduler_thread = self.scheduler.start()

    def drain(self) -> None:
        """The server is stopping (SIGTERM): long polls and event streams answer now, new
        scans get 503. Thread-safe (called from a signal handler)."""
        self.jobs.drain()
        self.backtests.drain()
        if self._loop is not None and self.draining is not None:
            self._loop.call_soon_threadsafe(self.draining.set)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop.set()  # wakes its sleep; a run under way finishes its session
            self._scheduler_thread.join(timeout=5)  # (a daemon: resumed on the next start)
        self.freshness.stop()
        self.jobs.shutdown()
        self.backtests.shutdown()
        self.health.stop()
        self.cache.close()


def busy(e: Busy, code: str = "too_many_scans") -> ApiError:
    return ApiError(429, code, str(e), headers={"Retry-After": str(e.retry_after)})


def strict_json(body: bytes) -> Any:
    """Decoded JSON without NaN or infinities (``{}`` for an empty body), or ApiError 422."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    def finite(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):  # 1e999 overflows to infinity: as invalid as NaN
            raise ValueError(f"{text} is out of the range of a float64")
        return v

    try:
        return json.loads(body, parse_constant=no_constants, parse_float=finite) \
            if body.strip() else {}
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ApiError(422, "invalid_request", f"body: not valid JSON ({e})", "body") from None


def parse_config(body: bytes) -> ScanConfig:
    """A ScanConfig from a JSON body, or ApiError 422 naming the field and the valid values."""
    obj = strict_json(body)
    if not isinstance(obj, dict):
        raise ApiError(422, "invalid_request", "body: expected a JSON object of ScanConfig "
                       f"fields; valid fields: {', '.join(ScanConfig.model_fields)}", "body")
    try:
        return ScanConfig(**obj)
    except ConfigError as e:
        raise config_error(e) from None
    except (TypeError, ValueError) as e:
        raise ApiError(422, "invalid_request", f"body: {e}", "body") from None


def config_error(e: ConfigError) -> ApiError:
    """422 naming the field; an expression error adds line, column, caret and suggestions."""
    if isinstance(e, ScreenError):
        extra = {k: v for k, v in e.as_dict().items() if k not in ("field", "message")}
        extra["detail"] = f"{e}\n{e.caret}"  # the message with the caret block, to print as is
        return ApiError(422, "invalid_expression", str(e), e.field, extra=extra)
    return ApiError(422, "invalid_request", str(e), e.field)


def _sse(seq: int, event: str, payload: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, event.encode(), dumps(payload))


def create_app(market: MarketData | None = None, settings: Settings | None = None,
               options: ServiceOptions | None = None, *,
               progress_hook: ProgressHook | None = None) -> FastAPI:
    """The service around ``market`` (default: ``data_engine.market()``).

    ``settings`` (default: the market's) supplies ``api_key`` and ``redis_url``;
    ``progress_hook(job_id, stage, done, total)`` is called in the worker thread on every
    progress callback of a scan (tests use it to hold a scan at a known point).
    """
    md = market if market is not None else data_engine.market()
    st = settings if settings is not None else md.settings
    opts = options or ServiceOptions()
    svc = Service(md, st, opts, progress_hook)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.start(asyncio.get_running_loop())
        await asyncio.to_thread(svc.health.ready.wait, 5.0)  # /health has a status at once
        yield
        svc.drain()
        await asyncio.to_thread(svc.stop)

    app = FastAPI(title="technic", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Full-market stock scanner: scans as jobs with progress, results "
                  "as JSON/CSV, symbol charts, Prometheus metrics.")
    app.state.service = svc

    # -- errors ------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> Response:
        body: dict[str, Any] = {"error": e.code, "message": e.message}
        if e.field is not None:
            body["field"] = e.field
        body.update(e.extra)
        return _json(body, e.status, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        err = e.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
        field = ".".join(loc) or "request"
        return _json({"error": "invalid_request", "field": field,
                      "message": f"{field}: {err.get('msg')} (got {err.get('input')!r})"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        msg = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) \
            else str(e.detail)
        return _json({"error": code, "message": msg}, e.status_code,
                     dict(e.headers) if e.headers else None)

    # -- service -----------------------------------------------------------------------------
    key_bytes = st.api_key.encode() if st.api_key else None

    @app.get("/health", tags=["service"])
    async def health(request: Request) -> Response:
        """From memory (refreshed in the background): never waits on Redis, the store, a job
        or the thread pool. Filesystem paths only for a request carrying the API key."""
        given = request.headers.get("x-api-key")
        private = key_bytes is not None and given is not None and hmac.compare_digest(
            given.encode(), key_bytes)
        body, code = svc.health.body(svc.jobs.active(), private)
        return _json(body, code)

    @app.get("/version", tags=["service"], dependencies=KEYED)
    def version() -> Response:
        pkgs = {}
        for p in ("fastapi", "uvicorn", "numpy", "pandas", "duckdb", "pyarrow", "numba"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                pkgs[p] = metadata.version(p)
        return _json({"name": "technic", "version": __version__, "api": "v1",
                      "python": sys.version.split()[0], "packages": pkgs})

    @app.get("/metrics", tags=["service"], dependencies=KEYED)
    def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/options", tags=["scan"], dependencies=KEYED)
    def options_() -> Response:
        return _json({"sectors": gics.SECTORS, "industries": gics.SECTOR_INDUSTRIES,
                      "types": gics.TYPES, "default_types": gics.DEFAULT_TYPES,
                      "columns": COLUMNS, "stages": STAGES,
                      "defaults": ScanConfig().model_dump(mode="json")})

    # -- screens -----------------------------------------------------------------------------
    @app.post("/v1/screens/validate", tags=["screens"], dependencies=KEYED,
              responses={422: {"model": models.ErrorBody}})
    async def validate_screen(request: Request) -> Response:
        """Check where / columns / sort_by / preset as a scan would: canonical keys, clauses,
        sessions needed; 422 with field, line, column, caret and suggestions."""
        try:
            obj = json.loads(await request.body() or b"{}")
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ApiError(422, "invalid_request", f"body: not valid JSON ({e})",
                           "body") from None
        try:
            return _json(queries.validate_screen(obj))
        except ConfigError as e:
            raise config_error(e) from None

    @app.get("/v1/screens/presets", tags=["screens"], dependencies=KEYED)
    def screen_presets() -> Response:
        """The preset screens: id, name, description, source, expression, sessions needed."""
        return _json({"presets": queries.preset_list()})

    # -- saved screens, watchlists, alert targets (logic in daily/service.py) ----------------
    async def body(request: Request) -> dict[str, Any]:
        try:
            obj = json.loads(await request.body() or b"{}")
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ApiError(422, "invalid_request", f"body: not valid JSON ({e})",
                           "body") from None
        if not isinstance(obj, dict):
            raise ApiError(422, "invalid_request", "body: expected a JSON object", "body")
        return obj

    def saved(fn: Any, *args: Any, status: int = 200, **kw: Any) -> Response:
        try:
            out = fn(*args, state=svc.state, **kw)
        except NotFound as e:
            raise ApiError(404, "not_found", str(e), e.field) from None
        except ConfigError as e:
            raise config_error(e) from None
        return Response(status_code=204) if out is None else _json(out, status)

    def screen_args(obj: dict[str, Any]) -> dict[str, Any]:
        return {"config": obj.get("config") or {}, "targets": obj.get("targets") or [],
                "enabled": obj.get("enabled", True)}  # checked (a bool) by add_screen

    @app.get("/v1/screens", tags=["saved"], dependencies=KEYED)
    def screens_list() -> Response:
        """Saved screens with their last run."""
        return saved(lambda state: {"screens": daily.list_screens(state)})

    @app.post("/v1/screens", tags=["saved"], dependencies=KEYED, status_code=201)
    async def screens_add(request: Request) -> Response:
        """Save a screen: {name, config: ScanConfig fields, targets: [...], enabled}."""
        obj = await body(request)
        return await run_in_threadpool(saved, daily.add_screen, obj.get("name"),
                                       **screen_args(obj), status=201)

    @app.get("/v1/screens/{name}", tags=["saved"], dependencies=KEYED)
    def screens_show(name: str) -> Response:
        """A saved screen, its recent runs and its last run's changes and rows."""
        return saved(daily.show_screen, name)

    @app.put("/v1/screens/{name}", tags=["saved"], dependencies=KEYED)
    async def screens_put(name: str, request: Request) -> Response:
        obj = await body(request)
        return await run_in_threadpool(saved, daily.add_screen, name, **screen_args(obj),
                                       replace=True)

    @app.delete("/v1/screens/{name}", tags=["saved"], dependencies=KEYED, status_code=204)
    def screens_remove(name: str) -> Response:
        return saved(daily.remove_screen, name)

    @app.post("/v1/screens/{name}/run", tags=["saved"], dependencies=KEYED, status_code=202)
    async def screens_run(name: str) -> Response:
        """Scan with the saved screen now (a job, as POST /v1/scan; nothing is stored)."""
        try:
            config = ScanConfig(**svc.state.screen(name)["config"])
        except NotFound as e:
            raise ApiError(404, "not_found", str(e), e.field) from None
        except ConfigError as e:
            raise config_error(e) from None
        job, served = await run_in_threadpool(svc.submit, config)
        out = job.status()
        out["served_by"] = served
        return _json(out, 202, {"Location": f"/v1/scan/{job.id}"})

    @app.get("/v1/watchlists", tags=["saved"], dependencies=KEYED)
    def watchlists_list() -> Response:
        return saved(lambda state: {"watchlists": daily.list_watchlists(state)})

    @app.post("/v1/watchlists", tags=["saved"], dependencies=KEYED, status_code=201)
    async def watchlists_add(request: Request) -> Response:
        """Save a watchlist: {name, items: ["AAPL:180:170:50" or {symbol, entry, stop, target,
        size}], targets: [...]}."""
        obj = await body(request)
        return await run_in_threadpool(saved, daily.add_watchlist, obj.get("name"),
                                       obj.get("items") or [], obj.get("targets") or [],
                                       status=201)

    @app.get("/v1/watchlists/{name}", tags=["saved"], dependencies=KEYED)
    def watchlists_show(name: str) -> Response:
        """Each symbol's last signal, its stop and target and the distance to them."""
        return saved(daily.show_watchlist, name)

    @app.put("/v1/watchlists/{name}", tags=["saved"], dependencies=KEYED)
    async def watchlists_put(name: str, request: Request) -> Response:
        obj = await body(request)
        return await run_in_threadpool(saved, daily.add_watchlist, name,
                                       obj.get("items") or [], obj.get("targets") or [],
                                       replace=True)

    @app.delete("/v1/watchlists/{name}", tags=["saved"], dependencies=KEYED, status_code=204)
    def watchlists_remove(name: str) -> Response:
        return saved(daily.remove_watchlist, name)

    @app.get("/v1/alerts", tags=["saved"], dependencies=KEYED)
    def alerts_list() -> Response:
        """Alert targets (secrets shown as "set") and the dead letters."""
        return saved(daily.list_targets)

    @app.post("/v1/alerts", tags=["saved"], dependencies=KEYED, status_code=201)
    async def alerts_add(request: Request) -> Response:
        """Save an alert target: {name, kind, ...its fields}."""
        obj = await body(request)
        return await run_in_threadpool(saved, daily.add_target, obj, status=201)

    @app.delete("/v1/alerts/{name}", tags=["saved"], dependencies=KEYED, status_code=204)
    def alerts_remove(name: str) -> Response:
        return saved(daily.remove_target, name)

    @app.post("/v1/alerts/{name}/test", tags=["saved"], dependencies=KEYED)
    def alerts_test(name: str) -> Response:
        """Send a sample message to the target now."""
        return saved(daily.test_target, name)

    # -- scans -------------------------------------------------------------------------------
    scan_schema = ScanConfig.model_json_schema()

    @app.post("/v1/scan", status_code=202, tags=["scan"], response_model=models.SubmitResponse,
              dependencies=KEYED,
              responses={422: {"model": models.ErrorBody}, 429: {"model": models.ErrorBody}},
              openapi_extra={"requestBody": {"required": False, "content": {
                  "application/json": {"schema": scan_schema}}}})
    async def submit(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the ScanConfig as a JSON "
                           "object with Content-Type: application/json ('{}' = defaults)")
        config = parse_config(await request.body())
        job, served = await run_in_threadpool(svc.submit, config)
        body = job.status()
        body["served_by"] = served
        return _json(body, 202, {"Location": f"/v1/scan/{job.id}"})

    @app.get("/v1/scans", tags=["scan"], dependencies=KEYED)
    def list_scans(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        jobs = sorted(svc.jobs.jobs(), key=lambda j: j.created, reverse=True)[:limit]
        out = []
        for j in jobs:
            s = j.status()
            out.append({k: s[k] for k in ("id", "state", "created_at", "finished_at", "rows",
                                          "source", "requests", "config", "links")})
        return _json({"scans": out})

    async def settled(job: Job, seconds: float) -> dict[str, Any]:
        """The job's status once it is done, ``seconds`` have passed or the server drains
        (awaited on its event queue: no worker thread is held)."""
        q, snap = job.subscribe()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while snap["state"] not in TERMINAL and not draining():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    event, snap = await asyncio.wait_for(q.get(), left)
                except TimeoutError:
                    break
                if event == "shutdown":
                    break
        finally:
            job.unsubscribe(q)
        return snap

    @app.get("/v1/scan/{job_id}", tags=["scan"], response_model=models.JobStatus,
             dependencies=KEYED)
    async def status(job_id: str, wait: Annotated[float, Query(
            ge=0, description="Seconds to wait for the scan to finish (long poll).")] = 0
    ) -> Response:
        job = svc.job(job_id)
        wait = min(wait, opts.max_wait_seconds)
        if wait <= 0:
            return _json(job.status())
        snap = await settled(job, wait)
        return _json(job.status() if snap["state"] not in TERMINAL else snap)

    @app.delete("/v1/scan/{job_id}", tags=["scan"], status_code=202, dependencies=KEYED)
    def cancel(job_id: str) -> Response:
        job = svc.job(job_id)
        if not svc.jobs.cancel(job):
            raise ApiError(409, "already_finished", f"scan {job_id} already ended "
                           f"({job.state})", extra={"state": job.state})
        return _json(job.status(), 202)

    @app.get("/v1/scan/{job_id}/results", tags=["scan"], dependencies=KEYED,
             responses={200: {"model": models.ResultsBody,
                              "content": {"text/csv": {}}}})
    async def results(job_id: str, request: Request,
                      format: Annotated[str | None, Query(
                          description="json (default) or csv")] = None) -> Response:
        job = svc.job(job_id)
        if format is None:
            accept = request.headers.get("accept", "")
            format = "csv" if "text/csv" in accept and "application/json" not in accept \
                else "json"
        if format not in ("json", "csv"):
            raise ApiError(422, "invalid_request", f"format: must be one of json, csv (got "
                           f"{format!r})", "format")
        if job.state != "done" or job.outcome is None:
            extra: dict[str, Any] = {"state": job.state}
            if job.error:
                extra["detail"] = job.error
            raise ApiError(409, "not_ready", f"scan {job_id} is {job.state}; results exist "
                           "once it is done", extra=extra)
        out = job.outcome
        etag = f'"{out.key[:40]}-{format}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        if format == "csv":
            data = await run_in_threadpool(out.csv_bytes)
            headers["Content-Disposition"] = (f'attachment; filename="technic-scan-'
                                              f'{out.as_of}-{job.id[:8]}.csv"')
            return Response(data, media_type="text/csv; charset=utf-8", headers=headers)
        data = out.json_bytes() if out.encoded else await run_in_threadpool(out.json_bytes)
        return Response(data, media_type="application/json", headers=headers)

    @app.get("/v1/scan/{job_id}/events", tags=["scan"], dependencies=KEYED,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def events(job_id: str) -> StreamingResponse:
        return event_stream(svc.job(job_id))

    def event_stream(job: Job) -> StreamingResponse:
        """progress... then the final state (done/failed/cancelled), or shutdown."""
        q, snap = job.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            seq = 0
            try:
                state = snap["state"]
                yield _sse(seq, state if state in TERMINAL else "progress", snap)
                if state not in TERMINAL and draining():
                    yield _sse(seq + 1, "shutdown", job.status())
                    return
                while state not in TERMINAL:
                    try:
                        event, payload = await asyncio.wait_for(q.get(), opts.heartbeat_seconds)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    seq += 1
                    state = payload["state"]
                    yield _sse(seq, event, payload)
                    if event == "shutdown":  # the final event: the server is stopping
                        return
            finally:
                job.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # -- backtests (logic in backtests.py) ---------------------------------------------------
    def backtest_job(job_id: str) -> bt.BacktestJob:
        job = svc.backtests.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"unknown or expired backtest id {job_id!r} (the "
                           f"newest {opts.max_backtests} backtests are kept)")
        return job

    def store_range() -> tuple[dt.date, dt.date, dt.date]:
        try:
            return bt.default_range(md)
        except DataError as e:
            raise ApiError(503, "store_empty", str(e), headers={"Retry-After": "5"}) from None

    @app.get("/v1/backtest/options", tags=["backtest"], dependencies=KEYED)
    def backtest_options() -> Response:
        """The stored sessions, the default range (the last year), horizons and the columns
        rank_by takes (for the default screen; a screen's own columns are valid too)."""
        first, start, last = store_range()
        return _json({"first_session": first, "last_session": last,
                      "defaults": {"from": start, "to": last, "every": 1,
                                   "horizons": list(bt.DEFAULT_HORIZONS), "max_hold": 20,
                                   "max_positions": 10},
                      "signals": bt.SIGNALS,
                      "rank_columns": bt.rank_columns(ScanConfig())})

    @app.post("/v1/backtest", tags=["backtest"], status_code=202, dependencies=KEYED,
              responses={422: {"model": models.ErrorBody}, 429: {"model": models.ErrorBody}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": bt.BacktestRequest.model_json_schema(
                      by_alias=True)}}}})
    async def backtest_submit(request: Request) -> Response:
        """Replay a screen over the stored sessions of from..to (a job: progress, ETA,
        cancel, results); one backtest runs at a time, never in a scan's slot."""
        obj = strict_json(await request.body())  # (a scan's rules: no NaN or infinity)

        def submit_() -> bt.BacktestJob:
            try:
                req = bt.parse_request(obj)
                config = bt.build_config(req, svc.state.screen)
                store_range()
                plan = bt.plan(req, config, md)
                return svc.backtests.submit(plan, svc.jobs.data_version.current())
            except NotFound as e:
                raise ApiError(404, "not_found", str(e), e.field) from None
            except ConfigError as e:
                raise config_error(e) from None
            except TooLarge as e:
                raise ApiError(422, "too_large", str(e)) from None
            except Busy as e:
                raise busy(e, "too_many_backtests") from None
            except ShuttingDown as e:
                raise ApiError(503, "shutting_down", str(e),
                               headers={"Retry-After": "5"}) from None

        job = await run_in_threadpool(submit_)
        return _json(job.status(), 202, {"Location": f"/v1/backtest/{job.id}"})

    @app.get("/v1/backtests", tags=["backtest"], dependencies=KEYED)
    def backtest_list() -> Response:
        jobs = sorted(svc.backtests.jobs(), key=lambda j: j.created, reverse=True)
        return _json({"backtests": [{k: s[k] for k in ("id", "state", "created_at",
                                                       "finished_at", "rows", "backtest",
                                                       "links")}
                                    for s in (j.status() for j in jobs)]})

    @app.get("/v1/backtest/{job_id}", tags=["backtest"], dependencies=KEYED)
    async def backtest_status(job_id: str, wait: Annotated[float, Query(
            ge=0, description="Seconds to wait for the backtest to end (long poll).")] = 0
    ) -> Response:
        """State and progress; when done, ``results``: the summaries, the report's tables
        and its SVG charts, and links to the per-session frames."""
        job = backtest_job(job_id)
        wait = min(wait, opts.max_wait_seconds)
        if wait > 0:
            await settled(job, wait)
        snap = job.status()
        if job.state == "done" and job.result is not None:
            snap["results"] = job.result.body
        return _json(snap)

    @app.delete("/v1/backtest/{job_id}", tags=["backtest"], status_code=202,
                dependencies=KEYED)
    def backtest_cancel(job_id: str) -> Response:
        job = backtest_job(job_id)
        if not svc.backtests.cancel(job):
            raise ApiError(409, "already_finished", f"backtest {job_id} already ended "
                           f"({job.state})", extra={"state": job.state})
        return _json(job.status(), 202)

    @app.get("/v1/backtest/{job_id}/events", tags=["backtest"], dependencies=KEYED,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def backtest_events(job_id: str) -> StreamingResponse:
        return event_stream(backtest_job(job_id))

    def backtest_done(job_id: str) -> bt.BacktestOutcome:
        job = backtest_job(job_id)
        if job.state != "done" or job.result is None:
            raise ApiError(409, "not_ready", f"backtest {job_id} is {job.state}; results "
                           "exist once it is done", extra={"state": job.state})
        return job.result

    @app.get("/v1/backtest/{job_id}/charts/{name}.svg", tags=["backtest"], dependencies=KEYED,
             responses={200: {"content": {"image/svg+xml": {}}}})
    def backtest_chart(job_id: str, name: str) -> Response:
        charts = {c["name"]: c for c in backtest_done(job_id).body["charts"]}
        c = charts.get(name)
        if c is None or c["svg"] is None:
            why = f"unknown chart; valid: {', '.join(charts)}" if c is None else c["note"]
            raise ApiError(404, "not_found", f"chart {name!r}: {why}", "name")
        return Response(c["svg"].encode(), media_type="image/svg+xml")

    @app.get("/v1/backtest/{job_id}/frames/{name}", tags=["backtest"], dependencies=KEYED,
             responses={200: {"content": {"application/vnd.apache.parquet": {}}}})
    async def backtest_frame(
            job_id: str, name: str,
            format: Annotated[str, Query(description="json (paged) or parquet (whole)")]
            = "json",
            offset: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=bt.MAX_PAGE_ROWS)] = bt.PAGE_ROWS
    ) -> Response:
        """A per-session frame of the report (matches, forward, trades, equity, ic)."""
        out = backtest_done(job_id)
        if name not in out.frames:
            raise ApiError(404, "not_found", f"frame {name!r}: unknown; valid: "
                           f"{', '.join(out.frames)}", "name")
        if format == "parquet":
            data = await run_in_threadpool(out.parquet, name)
            return Response(data, media_type="application/vnd.apache.parquet", headers={
                "Content-Disposition": f'attachment; filename="technic-backtest-'
                f'{job_id[:8]}-{name}.parquet"'})
        if format != "json":
            raise ApiError(422, "invalid_request", f"format: must be one of json, parquet "
                           f"(got {format!r})", "format")
        return _json(await run_in_threadpool(out.page, name, offset, limit))

    # -- symbols and universe ----------------------------------------------------------------
    def draining() -> bool:
        return svc.draining is not None and svc.draining.is_set()

    @app.get("/v1/symbol/{ticker}", tags=["data"], dependencies=KEYED,
             responses={429: {"model": models.ErrorBody}})
    def symbol(ticker: str,
               days: Annotated[int, Query(ge=20, le=queries.MAX_DAYS,
                                          description="Bars (sessions) to return.")]
               = queries.DEFAULT_DAYS,
               as_of: Annotated[dt.date | None, Query(description="Last session (default: the "
                                "scan's, else the newest stored).")] = None,
               job: Annotated[str | None, Query(
                   description="Take the scan row from this scan.")] = None) -> Response:
        if not _TICKER.match(ticker):
            raise ApiError(422, "invalid_request", f"ticker: {ticker!r} is not a ticker "
                           "(letters, digits, '.', '-'; at most 15)", "ticker")
        sym = ticker.upper()
        scan_job = svc.job(job) if job is not None else None
        if as_of is None and scan_job is not None and scan_job.outcome is not None:
            as_of = dt.date.fromisoformat(str(scan_job.outcome.as_of))
        try:  # one listing's bars (never a whole-market panel): no slot or budget needed
            body = queries.symbol_history(md, sym, days, as_of)
        except queries.UnknownSymbol as e:
            code = "no_bars" if "no bars" in str(e) else "unknown_symbol"
            raise ApiError(404, code, str(e)) from None
        except ConfigError as e:
            raise ApiError(422, "invalid_request", str(e), "as_of") from None
        except DataError as e:
            raise ApiError(503, "store_empty", str(e)) from None
        body["scan"] = None
        found = svc.jobs.latest_row(sym, job)
        if found is not None:
            j, row = found
            assert j.outcome is not None
            body["scan"] = {"id": j.id, "as_of": j.outcome.as_of, "row": row}
        return _json(body)

    @app.get("/v1/universe", tags=["data"], dependencies=KEYED)
    async def universe(as_of: Annotated[dt.date | None, Query(
            description="Point-in-time universe (default: the newest session).")] = None
    ) -> Response:
        """The default scan's universe; awaits the scan without holding a worker thread, and
        is cached per (data version, as-of)."""
        job, served = await run_in_threadpool(svc.submit, ScanConfig(as_of_date=as_of))
        await settled(job, opts.max_wait_seconds)
        out = job.outcome
        if out is None:
            raise ApiError(503 if not job.terminal else 500, "scan_unavailable",
                           f"the default scan {job.id} is {job.state}; retry shortly",
                           headers={"Retry-After": "5"}, extra={"scan": job.id})
        ck = (out.data_version, str(as_of))
        summary = svc.universes.get(ck)
        if summary is None:
            ref = await run_in_threadpool(md.reference)
            summary = queries.universe_summary(ref, out)
            svc.universes = {k: v for k, v in svc.universes.items() if k[0] == ck[0]}
            svc.universes[ck] = summary
        return _json({**summary, "scan": {"id": job.id, "served_by": served,
                                          "config": out.stats.get("config")}})

    # -- web page and API docs ---------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    # Swagger UI from files served here (the page's Content-Security-Policy allows only this
    # origin, and FastAPI's default page loads it from a CDN with an inline script).
    assets = _docs_assets()

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        if assets is None:
            raise ApiError(404, "not_found", "API docs need the fastapi-offline package "
                           "(the service extra); /openapi.json has the API description")
        return HTMLResponse(DOCS_HTML, headers={"Cache-Control": "no-cache"})

    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(Guard, api_key=st.api_key, max_body_bytes=opts.max_body_bytes,
                       allowed_hosts=opts.allowed_hosts)
    return app


class _DrainingServer(uvicorn.Server):
    """uvicorn that, on SIGTERM/SIGINT, first lets long polls and event streams answer (they
    would otherwise hold the graceful shutdown until its timeout and then be cut)."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.service.drain()
        super().handle_exit(sig, frame)


def serve_app(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` (from :func:`create_app`) until SIGTERM/SIGINT, draining first."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False,
                            timeout_graceful_shutdown=5)
    _DrainingServer(config, app.state.service).run()


def run(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, max_scans: int | None = None,
        log_level: str = "info") -> None:
    """``technic serve``: the process-wide market and settings, served by uvicorn."""
    from technic_v4.config.settings import get_settings

    settings = get_settings()
    loopback = host in LOOPBACK or host.startswith("127.")
    if not loopback and not settings.api_key:
        log.warning("serving on %s without TECHNIC_API_KEY: anyone who reaches this address "
                    "can run scans", host)
    kw: dict[str, Any] = {"warm_store": True, "schedule": settings.schedule_enabled,
                          "allowed_hosts": (*LOOPBACK, host) if loopback else None}
    if max_scans is not None:
        kw["max_running_scans"] = max_scans
    app = create_app(data_engine.market(), settings, ServiceOptions(**kw))
    serve_app(app, host, port, log_level)
