"""Backtest jobs: ``technic_v4.backtest.run`` behind the service, as scans are (``jobs.py``).

    POST /v1/backtest  ─▶ parse (BacktestRequest) ─▶ plan (validated against the store: 422
    naming the field) ─▶ BacktestManager.submit ─▶ one worker thread ─▶ backtest.run(...,
    on_progress, cancel) ─▶ report.build_charts / tables / frames ─▶ BacktestOutcome

- A backtest job is a :class:`~technic_v4.service.jobs.Job` (its lock, events, listeners,
  cancel and finished events), so long polls and Server-Sent Events work as for scans.
- One backtest runs at a time (its own worker thread and its own one-slot Admission): it never
  holds a scan slot, so scans go on while it runs; at most ``max_queued`` more wait, beyond
  that 429 with Retry-After. A backtest larger than the memory budget is refused (422).
- Progress: the replay's steps as ``(step, done, total)``; the ETA is measured: seconds per
  (listing x session) of earlier backtests of this process (EWMA) for the whole run, and inside
  a step that reports chunks the time per chunk so far; unknown (``None``) before either exists.
- Cancel sets the job's event; ``backtest.run`` raises ScanCancelled at its next progress tick,
  and a run that returns after a cancel is dropped as cancelled too.
- No sharing between identical requests (a backtest is rarely repeated verbatim); finished jobs
  (with their frames and charts) are kept up to ``max_jobs`` and ``max_result_bytes`` of
  reports, oldest evicted first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from technic_v4.backtest import BacktestResult, report
from technic_v4.backtest import run as run_backtest
from technic_v4.backtest.replay import replay_config, sessions_between
from technic_v4.backtest.runner import (
    DEFAULT_HORIZONS,
    check_horizons,
    rank_columns,
    with_signals,
)
from technic_v4.config.scan import ScanConfig
from technic_v4.data.market import MarketData
from technic_v4.errors import ConfigError, DataError, ScanCancelled, TechnicError
from technic_v4.scoring.scores import SIGNALS
from technic_v4.service.admission import Admission, Busy, estimate_bytes
from technic_v4.service.jobs import Job, ProgressHook, ShuttingDown
from technic_v4.service.progress import Progress, Throughput
from technic_v4.service.results import column_values, jsonable

log = logging.getLogger(__name__)

DEFAULT_SPAN_DAYS = 365  # the default range: the last year of stored sessions
PAGE_ROWS = 500  # default page of the frames' JSON
MAX_PAGE_ROWS = 10_000
# Bounds of max_hold and max_positions: the plans' kernel takes int64 (a larger value failed the
# job) and the portfolio sizes two arrays by max_positions (10**9 asked for 16 GB).
MAX_HOLD = 2_520  # ten years of sessions
MAX_POSITIONS = 10_000
# ScanConfig fields a backtest takes beside its own (the replay fixes the other two).
FIXED_BY_REPLAY = ("lookback_days", "as_of_date")
SCAN_OPTIONS = tuple(f for f in ScanConfig.model_fields
                     if f not in (*FIXED_BY_REPLAY, "where", "preset"))
FIELD_NAMES = {"start": "from", "end": "to"}  # backtest.run's names -> the request's


class BacktestRequest(BaseModel):
    """``POST /v1/backtest``: a screen (``where``/``preset``/``signal``, or a saved ``screen``),
    a range and the analyses; any other ScanConfig field (``top_n``, ``min_tech_rating``,
    ``max_symbols``, ``sectors``, ``types`` ...) applies to the scan replayed at each session."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    screen: str | None = Field(default=None, description="A saved screen's name (GET "
                               "/v1/screens); not combined with where/preset.")
    where: str | None = Field(default=None, description="A screen-language expression.")
    preset: str | None = Field(default=None, description="A preset screen id.")
    signal: list[str] | None = Field(default=None, description="Keep rows with one of these "
                                     f"signals: {', '.join(SIGNALS)}.")
    from_: dt.date | None = Field(default=None, alias="from", description="First session "
                                  "replayed (default: a year before `to`, or the first stored).")
    to: dt.date | None = Field(default=None, description="Last session (default: the newest "
                               "stored).")
    every: pydantic.StrictInt = Field(default=1, ge=1, description="Every N-th session.")
    horizons: list[pydantic.StrictInt] | str = Field(
        default=list(DEFAULT_HORIZONS), description="Forward-return horizons in sessions.")
    rank_by: str | None = Field(default=None, description="A numeric column whose IC, quantile "
                                "returns and turnover are measured (e.g. TechRating).")
    max_hold: pydantic.StrictInt = Field(default=20, ge=1, le=MAX_HOLD, description="Sessions "
                                         "a trade plan is held at most.")
    max_positions: pydantic.StrictInt = Field(default=10, ge=1, le=MAX_POSITIONS,
                                              description="Open positions at most in the "
                                              "equal-risk portfolio.")


@dataclass(frozen=True)
class Plan:
    """A request checked against the store: what ``backtest.run`` is called with."""

    config: ScanConfig
    start: dt.date
    end: dt.date
    every: int
    horizons: tuple[int, ...]
    rank_by: str | None
    max_hold: int
    max_positions: int
    sessions: int  # replayed
    listings: int
    request: dict[str, Any]

    def run_kwargs(self) -> dict[str, Any]:
        return {"every": self.every, "horizons": self.horizons, "rank_by": self.rank_by,
                "max_hold": self.max_hold, "max_positions": self.max_positions}

    def describe(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), **self.run_kwargs(),
                "horizons": list(self.horizons), "sessions": self.sessions,
                "screen": self.request.get("screen"),
                "config": self.config.model_dump(mode="json", exclude_defaults=True)}


def parse_request(obj: Any) -> BacktestRequest:
    """A BacktestRequest from decoded JSON, or ConfigError naming the field."""
    if not isinstance(obj, dict):
        raise ConfigError("body", "expected a JSON object of backtest fields")
    try:
        return BacktestRequest.model_validate(obj)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        name = ".".join(str(x) for x in err.get("loc", ())) or "body"
        raise ConfigError(name, f"{err.get('msg')} (got {err.get('input')!r})") from None


def build_config(req: BacktestRequest, saved: Callable[[str], dict[str, Any]]) -> ScanConfig:
    """The scan replayed at each session. ``saved(name)`` returns a saved screen (raising
    ``daily.state.NotFound`` for an unknown name)."""
    extra = dict(req.model_extra or {})
    for name in extra:
        if name in FIXED_BY_REPLAY:
            raise ConfigError(name, "a backtest replays every stored bar at each session of "
                              "from..to; leave it out")
        if name not in SCAN_OPTIONS:
            raise ConfigError(name, "unknown field; valid: screen, where, preset, signal, "
                              "from, to, every, horizons, rank_by, max_hold, max_positions, "
                              f"and the scan options {', '.join(SCAN_OPTIONS)}")
    base: dict[str, Any] = {}
    if req.screen is not None:
        if req.where or req.preset:
            raise ConfigError("screen", "give a saved screen or where/preset, not both")
        base = {k: v for k, v in saved(req.screen)["config"].items()
                if k not in FIXED_BY_REPLAY}
    if req.where:
        base["where"] = req.where
    if req.preset:
        base["preset"] = req.preset
    if req.signal:
        if base.get("where"):  # checked alone, with the other fields (its error names where)
            _scan_config({**base, **extra})
        base["where"], shorts = with_signals(base.get("where"), req.signal)
        if shorts:
            base["allow_shorts"] = True
    base.update(extra)
    return _scan_config(base)


def _scan_config(fields: dict[str, Any]) -> ScanConfig:
    try:
        return ScanConfig(**fields)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError("body", str(e)) from None


def default_range(market: MarketData) -> tuple[dt.date, dt.date, dt.date]:
    """(first stored, default from, last stored): the default range is the last year."""
    stored = market.store.stored_sessions()
    if len(stored) == 0:
        raise DataError("the local store is empty: run `technic data update` (or a scan) first")
    first, last = stored[0].astype(dt.date), stored[-1].astype(dt.date)
    return first, max(first, last - dt.timedelta(days=DEFAULT_SPAN_DAYS)), last


def plan(req: BacktestRequest, config: ScanConfig, market: MarketData) -> Plan:
    """Check ``req`` against the store as ``backtest.run`` would (ConfigError naming the
    request's field), so bad input is a 422 now rather than a failed job."""
    first, start_default, last = default_range(market)
    if req.to is not None and req.to < first:  # (and a year before it may not be a date)
        raise ConfigError("to", f"{req.to} is before the first stored session {first}")
    end = req.to or last
    start = req.from_ or (max(first, end - dt.timedelta(days=DEFAULT_SPAN_DAYS))
                          if req.to else start_default)
    try:
        days = sessions_between(market, start, end, req.every)
        hs = check_horizons(req.horizons)
        if req.rank_by is not None and req.rank_by not in rank_columns(config):
            raise ConfigError("rank_by", f"unknown numeric column {req.rank_by!r}; valid: "
                              f"{', '.join(rank_columns(config))}")
        d0 = days[0].astype(dt.date)
        from technic_v4.pipeline import check_bars

        check_bars(replay_config(config), min(market.max_bars(), len(market.sessions(d0))), d0)
    except ConfigError as e:
        raise renamed(e) from None
    return Plan(config, start, end, req.every, hs, req.rank_by, req.max_hold,
                req.max_positions, len(days), len(market.reference()),
                req.model_dump(mode="json", by_alias=True, exclude_none=True))


def renamed(e: ConfigError) -> ConfigError:
    """``e`` with backtest.run's field names (start, end) as the request names them."""
    name = FIELD_NAMES.get(e.field)
    if name is None:
        return e
    return ConfigError(name, str(e).removeprefix(f"{e.field}: "))


# -- results ---------------------------------------------------------------------------------

def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (a named or dated index becomes the first columns)."""
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    cols = [str(c) for c in frame.columns]
    values = [column_values(frame.iloc[:, i]) for i in range(frame.shape[1])]
    return [dict(zip(cols, r, strict=True)) for r in zip(*values, strict=True)]


def _cell(v: Any) -> Any:
    """One value of a report table's mixed column: numbers stay numbers, a session a date."""
    if isinstance(v, pd.Timestamp) and v == v.normalize():
        return v.date().isoformat()
    return jsonable(v)


def table_rows(frame: pd.DataFrame) -> list[list[Any]]:
    """A report table's rows as lists (its "value" columns mix text, numbers and dates)."""
    cols = []
    for i in range(frame.shape[1]):
        col = frame.iloc[:, i]
        mixed = pd.api.types.is_object_dtype(col.dtype)
        cols.append([_cell(v) for v in col.tolist()] if mixed else column_values(col))
    return [list(r) for r in zip(*cols, strict=True)]


def summary_body(result: BacktestResult) -> dict[str, Any]:
    """The analyses as JSON: summary per horizon, IC and its decay, quantiles, turnover, the
    trade plans' summary and the portfolio's statistics (absent when not computed)."""
    a = result.analyses
    out: dict[str, Any] = {}
    if isinstance(a.get("summary"), pd.DataFrame):
        out["summary"] = records(a["summary"].reset_index())
    if isinstance(a.get("ic_decay"), pd.DataFrame):
        out["ic_decay"] = records(a["ic_decay"].reset_index())
    if isinstance(a.get("quantiles"), dict):
        out["quantiles"] = {str(h): {"quantiles": q.quantiles, "demeaned": q.demeaned,
                                     "mean": q.mean, "std_error": q.std_error,
                                     "spread_mean": q.spread_mean, "spread_std": q.spread_std,
                                     "spread_t_stat": q.spread_t_stat,
                                     "spread_sessions": q.spread_sessions}
                            for h, q in a["quantiles"].items()}
    if isinstance(a.get("turnover"), pd.Series):
        t = a["turnover"].to_numpy(np.float64)
        out["turnover_mean"] = float(np.nanmean(t)) if np.isfinite(t).any() else None
    if a.get("trade_summary") is not None:
        out["trade_summary"] = a["trade_summary"]
    if a.get("portfolio") is not None:
        out["portfolio"] = a["portfolio"].stats
    return jsonable(out)


class BacktestOutcome:
    """A finished backtest: its charts (SVG) and frames, and the JSON body. Not the result
    itself: its replay holds the universe frame of every listing at every session."""

    def __init__(self, result: BacktestResult, charts: list[report.Chart], job_id: str) -> None:
        self.frames = report.frames(result)
        rep = result.replay
        per_day = result.matches["AsOf"].nunique() if len(result.matches) else 0
        base = f"/v1/backtest/{job_id}/frames"
        self.body: dict[str, Any] = jsonable({
            "message": result.message,
            "screen": report.screen_text(result),
            "sessions": len(rep.sessions),
            "first_session": rep.sessions[0].date() if len(rep.sessions) else None,
            "last_session": rep.sessions[-1].date() if len(rep.sessions) else None,
            "matched_sessions": int(per_day), "rows": len(result.matches),
            "horizons": list(result.horizons), "rank_by": result.rank_by,
            "max_hold": result.max_hold, "missing": list(result.missing),
            "stats": result.stats,
            **summary_body(result),
            "tables": [{"title": title, "columns": [str(c) for c in f.columns],
                        "rows": table_rows(f)} for title, f in report.tables(result)],
            "charts": [{"name": c.name, "title": c.title,
                        "svg": None if c.svg is None else c.svg.decode("utf-8"),
                        "note": c.note} for c in charts],
            "frames": {name: {"rows": len(f), "json": f"{base}/{name}",
                              "parquet": f"{base}/{name}?format=parquet"}
                       for name, f in self.frames.items()},
        })
        self.nbytes = len(json.dumps(self.body)) + sum(
            int(f.memory_usage(deep=True).sum()) for f in self.frames.values())

    def page(self, name: str, offset: int, limit: int) -> dict[str, Any]:
        f = self.frames[name]
        part = f.iloc[offset:offset + limit]
        return {"name": name, "total": len(f), "offset": offset, "limit": limit,
                "rows": records(part)}

    def parquet(self, name: str) -> bytes:
        buf = io.BytesIO()
        self.frames[name].to_parquet(buf)
        return buf.getvalue()


# -- progress --------------------------------------------------------------------------------

class Rate:
    """Seconds per (listing x session) of the backtests of this process (EWMA)."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._lock = threading.Lock()
        self._per_unit: float | None = None

    def observe(self, seconds: float, units: int) -> None:
        v = seconds / max(units, 1)
        with self._lock:
            self._per_unit = v if self._per_unit is None else \
                (1 - self.alpha) * self._per_unit + self.alpha * v

    def expect(self, units: int) -> float | None:
        with self._lock:
            return None if self._per_unit is None else self._per_unit * units


@dataclass
class StepProgress(Progress):
    """A backtest's progress: the step running, its ``done``/``total``, the steps completed,
    percent and ETA (module docstring). Mutated under the job's lock."""

    expected: float | None = None  # seconds the whole run should take (from Rate)
    step: str | None = None
    done: int = 0
    total: int | None = None
    step_started: float | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)

    def tick(self, stage: str, done: int, total: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.started is None:
            self.start(now)
        changed = stage != self.step
        if changed:
            if self.step is not None and self.step_started is not None:
                self.steps.append((self.step, now - self.step_started))
            self.step, self.step_started = stage, now
        self.done, self.total = done, total
        return changed

    def finish(self, stages: list[dict[str, Any]] | None) -> None:
        self.finished = True
        self.ended = time.monotonic()
        if stages is not None:  # done
            if self.step is not None and self.step_started is not None:
                self.steps.append((self.step, self.ended - self.step_started))
            self.step = None
            self.percent = 100.0

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        end = self.ended if self.ended is not None else now
        elapsed = 0.0 if self.started is None else max(end - self.started, 0.0)
        eta = None if self.finished or self.started is None else self._remaining(now, elapsed)
        if not self.finished:
            if eta is not None and elapsed + eta > 0:
                pct = 100.0 * elapsed / (elapsed + eta)
            else:
                pct = 100.0 * self.done / self.total if self.total else 0.0
            self.percent = min(max(pct, self.percent), 99.0) if self.started is not None \
                else 0.0
        return {"step": None if self.finished else self.step, "done": self.done,
                "total": self.total, "percent": round(self.percent, 1),
                "elapsed_seconds": round(elapsed, 3),
                "eta_seconds": None if eta is None else round(eta, 3),
                "steps": [{"step": s, "seconds": round(x, 6)} for s, x in self.steps]}

    def _remaining(self, now: float, elapsed: float) -> float | None:
        in_step = None
        if self.step_started is not None and self.total and 0 < self.done < self.total:
            in_step = (now - self.step_started) * (self.total - self.done) / self.done
        whole = None if self.expected is None else max(self.expected - elapsed, 0.0)
        got = [x for x in (in_step, whole) if x is not None]
        return max(got) if got and math.isfinite(max(got)) else None


# -- jobs ------------------------------------------------------------------------------------

@dataclass(eq=False)
class BacktestJob(Job):
    plan: Plan | None = None
    result: BacktestOutcome | None = None

    def _status(self) -> dict[str, Any]:
        base = f"/v1/backtest/{self.id}"
        assert self.plan is not None
        return {
            "id": self.id, "kind": "backtest", "state": self.state,
            "data_version": self.data_version, "request": self.plan.request,
            "backtest": self.plan.describe(),
            "created_at": _iso(self.created), "started_at": _iso(self.started),
            "finished_at": _iso(self.finished), "progress": self.progress.snapshot(),
            "watchers": len(self.listeners),
            "rows": None if self.result is None else self.result.body["rows"],
            "message": None if self.result is None else self.result.body["message"],
            "error": self.error,
            "links": {"self": base, "events": f"{base}/events",
                      "frames": f"{base}/frames/{{name}}"},
        }


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def key_of(plan: Plan, version: str) -> str:
    text = json.dumps([plan.describe(), version], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class BacktestManager:
    """Backtest jobs on one worker thread (module docstring)."""

    def __init__(self, market: MarketData, *, budget_bytes: int, max_queued: int = 2,
                 max_jobs: int = 16, max_result_bytes: int = 1 << 30,
                 progress_interval: float = 0.1, hook: ProgressHook | None = None) -> None:
        self.market = market
        self.admission = Admission(1, budget_bytes)
        self.max_queued = max_queued
        self.max_jobs = max_jobs
        self.max_result_bytes = max_result_bytes
        self.progress_interval = progress_interval
        self.hook = hook
        self.rate = Rate()
        self._jobs: OrderedDict[str, BacktestJob] = OrderedDict()
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="technic-backtest")
        self._closing = False

    def get(self, job_id: str) -> BacktestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[BacktestJob]:
        with self._lock:
            return list(self._jobs.values())

    def cost(self, plan: Plan) -> int:
        """Peak bytes: the replay loads every stored bar of every listing, and the analyses
        hold session-aligned panels of the same size."""
        return estimate_bytes(plan.listings, len(self.market.store.stored_sessions()))

    def retry_after(self) -> int:
        etas = [j.status()["progress"]["eta_seconds"] for j in self.jobs()
                if j.state == "running"]
        known = [e for e in etas if e is not None]
        return max(1, math.ceil(min(known))) if known else 5

    def submit(self, plan: Plan, version: str) -> BacktestJob:
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        self.admission.check(self.cost(plan), "this backtest")
        with self._lock:
            active = sum(not j.terminal for j in self._jobs.values())
            if active >= 1 + self.max_queued:
                retry = self.retry_after()
                raise Busy(f"{active} backtests are queued or running (one runs at a time, "
                           f"{self.max_queued} may wait); retry in {retry} s", retry, active)
            progress = StepProgress(Throughput(), expected=self.rate.expect(
                plan.sessions * plan.listings))
            job = BacktestJob(id=uuid.uuid4().hex, key=key_of(plan, version),
                              config=plan.config, data_version=version, progress=progress,
                              plan=plan)
            self._jobs[job.id] = job
            job.future = self._pool.submit(self._run, job)
            self._evict()
            return job

    def _evict(self) -> None:
        """Drop the oldest finished jobs while more than ``max_jobs`` are kept or their reports
        hold more than ``max_result_bytes`` (the newest report always stays)."""
        finished = sorted((j for j in self._jobs.values() if j.terminal),
                          key=lambda j: j.finished or j.created)
        held = sum(j.result.nbytes for j in finished if j.result is not None)
        for j in finished:
            newest = j is finished[-1]
            if len(self._jobs) <= self.max_jobs and (held <= self.max_result_bytes or newest):
                break
            del self._jobs[j.id]
            held -= 0 if j.result is None else j.result.nbytes

    def cancel(self, job: BacktestJob) -> bool:
        """Stop ``job``: False when it had already ended."""
        with job.lock:
            if job.terminal:
                return False
            job.cancel_event.set()
            if job.state == "queued" and job.future is not None and job.future.cancel():
                self._finish_locked(job, "cancelled", None, None)
        return True

    def _run(self, job: BacktestJob) -> None:
        assert job.plan is not None
        try:
            with self.admission.enter(self.cost(job.plan), job.cancel_event.is_set) as entered:
                if not entered:
                    with job.lock:
                        self._finish_locked(job, "cancelled", None, None)
                    return
                self._run_admitted(job, job.plan)
        except ScanCancelled:
            with job.lock:
                self._finish_locked(job, "cancelled", None, None)
            log.info("backtest %s cancelled", job.id)
        except TechnicError as e:
            field_ = getattr(e, "field", None)
            if isinstance(e, ConfigError):
                e = renamed(e)
                field_ = e.field
            with job.lock:
                self._finish_locked(job, "failed", None, {
                    "error": type(e).__name__, "message": str(e), "field": field_})
        except Exception:
            log.exception("backtest %s failed", job.id)
            with job.lock:
                self._finish_locked(job, "failed", None, {
                    "error": "internal_error", "field": None,
                    "message": f"the backtest failed unexpectedly (job {job.id}); the server "
                    "log has the details"})

    def _run_admitted(self, job: BacktestJob, plan: Plan) -> None:
        with job.lock:
            if job.cancel_event.is_set():
                raise ScanCancelled("cancelled while queued")
            job.state = "running"
            job.started = time.time()
            job.progress.start()
            job._publish_locked("progress")

        def progress(step: str, done: int, total: int) -> None:
            with job.lock:
                changed = job.progress.tick(step, done, total)  # a new step: always told
                if changed or time.monotonic() - job.last_publish >= self.progress_interval:
                    job._publish_locked("progress")
            if self.hook is not None:
                self.hook(job.id, step, done, total)

        t0 = time.perf_counter()
        res = run_backtest(plan.config, plan.start, plan.end, data=self.market,
                           on_progress=progress, cancel=job.cancel_event, **plan.run_kwargs())
        progress("charts", 0, 1)  # a tick: the cancel check and the hook see this step too
        if job.cancel_event.is_set():
            raise ScanCancelled("cancelled after the replay")
        out = BacktestOutcome(res, report.build_charts(res), job.id)
        if job.cancel_event.is_set():
            raise ScanCancelled("cancelled while drawing the charts")
        self.rate.observe(time.perf_counter() - t0, plan.sessions * plan.listings)
        with self._lock, job.lock:
            if job.cancel_event.is_set():  # a DELETE answered 202 since the check above
                raise ScanCancelled("cancelled as the backtest ended")
            self._finish_locked(job, "done", out, None)
            self._evict()
        log.info("backtest %s done: %s", job.id, res.message)

    def _finish_locked(self, job: BacktestJob, state: str, out: BacktestOutcome | None,
                       error: dict[str, Any] | None) -> None:
        job.result = out
        job.end_locked(state, error, [] if state == "done" else None)

    def drain(self) -> None:
        self._closing = True
        for j in self.jobs():
            if not j.terminal:
                j.announce_shutdown()

    def shutdown(self) -> None:
        self._closing = True
        for j in self.jobs():
            self.cancel(j)
        self._pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["DEFAULT_HORIZONS", "SIGNALS", "BacktestJob", "BacktestManager", "BacktestOutcome",
           "BacktestRequest", "Plan", "build_config", "default_range", "parse_request", "plan",
           "rank_columns"]
