"""Response shapes of the HTTP API (documentation in /docs; the request body is ScanConfig)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
Source = Literal["computed", "shared", "memory", "redis"]


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. invalid_request, not_found.")
    message: str = Field(description="What went wrong and how to fix it.")
    field: str | None = Field(default=None, description="The request field at fault.")


class StageTime(BaseModel):
    stage: str
    seconds: float


class ScanProgress(BaseModel):
    stage: str | None = Field(description="The stage running now (None when not running).")
    stage_index: int | None = Field(description="1-based position of the stage.")
    stages: int = Field(description="Number of stages (pipeline.STAGES).")
    done: int = Field(description="Items done in the running stage, when it reports chunks.")
    total: int | None = Field(description="Items of the running stage, when known.")
    percent: float = Field(description="Overall percent, 100 when done.")
    elapsed_seconds: float
    eta_seconds: float | None = Field(description="From measured throughput; None = unknown.")
    completed: list[StageTime]


class JobLinks(BaseModel):
    self: str
    results: str
    csv: str
    events: str


class JobStatus(BaseModel):
    id: str
    state: JobState
    key: str = Field(description="Result key: SHA-256 of (technic version, config, data).")
    data_version: str = Field(description="Fingerprint of the store content scanned.")
    config: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: ScanProgress
    requests: int = Field(description="Submissions served by this job (shared computation).")
    cancel_requests: int = Field(description="Requesters that cancelled; the job stops when "
                                 "every requester has.")
    watchers: int = Field(description="Clients following it now (event streams, long polls).")
    source: Source = Field(description="computed here, or taken from a cache layer.")
    rows: int | None = None
    message: str | None = None
    error: ErrorBody | None = None
    links: JobLinks


class SubmitResponse(JobStatus):
    served_by: Source = Field(description="How this submission was served: computed (a new "
                              "job), shared (joined an identical job), memory/redis (cache).")


class ResultsBody(BaseModel):
    key: str
    data_version: str
    as_of: str | None
    message: str
    count: int
    columns: list[str]
    rows: list[dict[str, Any]]
    stats: dict[str, Any]
