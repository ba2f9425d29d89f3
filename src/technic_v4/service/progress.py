"""Multi-stage scan progress: which stage runs, how far, overall percent and an ETA.

``pipeline.scan`` calls ``progress(stage, done, total)`` as each stage of ``pipeline.STAGES`` ends
(``done == total``) and per chunk inside long stages (update: sessions stored; indicators:
symbols computed). A stage is complete at its first ``done >= total`` tick; the stage running is
the one after the last complete stage.

The ETA comes from measured throughput: inside a stage that reports chunks, the elapsed time per
item so far; for stages still to come, each stage's seconds per item over previous scans of this
process (an exponentially weighted mean), times the items the scan now has. Before any scan
finished there is no history and the ETA is unknown (``None``) until the running stage reports
chunks; the percent then falls back to stages completed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from technic_v4.pipeline import STAGES

_INDEX = {s: i for i, s in enumerate(STAGES)}


class Throughput:
    """Seconds per item of each stage over past scans (EWMA), shared by a process's jobs."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._lock = threading.Lock()
        self._per_item: dict[str, float] = {}
        self._seconds: dict[str, float] = {}

    def observe(self, stages: list[dict[str, Any]]) -> None:
        """Learn from a finished scan's ``stats["stages"]``."""
        with self._lock:
            for st in stages:
                name, sec = str(st["stage"]), float(st["seconds"])
                items = max(int(st["in"]), int(st["out"]), 1)
                for table, v in ((self._per_item, sec / items), (self._seconds, sec)):
                    old = table.get(name)
                    table[name] = v if old is None else (1 - self.alpha) * old + self.alpha * v

    def expect(self, stage: str, items: int | None) -> float | None:
        """Expected seconds of ``stage`` for ``items`` items (None: never measured)."""
        with self._lock:
            if items is not None and items > 0 and stage in self._per_item:
                return self._per_item[stage] * items
            return self._seconds.get(stage)


@dataclass
class Progress:
    """The progress of one scan (mutated by the worker thread under the job's lock)."""

    model: Throughput
    started: float | None = None  # time.monotonic()
    completed: list[tuple[str, float]] = field(default_factory=list)  # (stage, seconds)
    last_complete_at: float | None = None
    chunk: tuple[str, int, int] | None = None  # running stage's (stage, done, total)
    items: int | None = None  # symbols in flight (latest total outside "update")
    percent: float = 0.0
    finished: bool = False
    ended: float | None = None  # time.monotonic() at finish

    def start(self, now: float | None = None) -> None:
        self.started = self.last_complete_at = time.monotonic() if now is None else now

    def tick(self, stage: str, done: int, total: int, now: float | None = None) -> bool:
        """Record a callback; True when it completed a stage."""
        now = time.monotonic() if now is None else now
        if self.started is None:
            self.start(now)
        if stage != "update" and total > 0:
            self.items = total
        if done >= total:
            if any(s == stage for s, _ in self.completed):
                return False
            assert self.last_complete_at is not None
            self.completed.append((stage, now - self.last_complete_at))
            self.last_complete_at = now
            self.chunk = None
            return True
        self.chunk = (stage, done, total)
        return False

    def finish(self, stages: list[dict[str, Any]] | None) -> None:
        """The scan ended; with its stats, adopt the pipeline's own stage timings."""
        self.finished = True
        self.ended = time.monotonic()
        if stages is not None:
            self.completed = [(str(s["stage"]), float(s["seconds"])) for s in stages]
            self.percent = 100.0

    @property
    def running_stage(self) -> str | None:
        if self.finished or self.started is None:
            return None
        if self.chunk is not None:
            return self.chunk[0]
        done = {s for s, _ in self.completed}
        nxt = [s for s in STAGES if s not in done]
        return nxt[0] if nxt else None

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        stage = self.running_stage
        end = self.ended if self.ended is not None else now
        elapsed = 0.0 if self.started is None else max(end - self.started, 0.0)
        done_n, total_n = 0, None
        if self.chunk is not None:
            _, done_n, total_n = self.chunk
        eta = None if self.finished else self._eta(stage, now)
        if self.finished:
            pct = self.percent
        else:
            if eta is not None and elapsed + eta > 0:
                pct = 100.0 * elapsed / (elapsed + eta)
            else:
                frac = done_n / total_n if total_n else 0.0
                pct = 100.0 * (len(self.completed) + frac) / len(STAGES)
            pct = min(max(pct, self.percent), 99.0)
            self.percent = pct
        return {
            "stage": stage,
            "stage_index": None if stage is None else _INDEX.get(stage, 0) + 1,
            "stages": len(STAGES),
            "done": done_n,
            "total": total_n,
            "percent": round(pct, 1),
            "elapsed_seconds": round(elapsed, 3),
            "eta_seconds": None if eta is None else round(eta, 3),
            "completed": [{"stage": s, "seconds": round(sec, 6)} for s, sec in self.completed],
        }

    def _eta(self, stage: str | None, now: float) -> float | None:
        if stage is None or self.started is None:
            return None
        assert self.last_complete_at is not None
        in_stage = now - self.last_complete_at
        remaining: float | None = None
        if self.chunk is not None and self.chunk[1] > 0:
            _, d, t = self.chunk
            remaining = in_stage * (t - d) / d
        else:
            exp = self.model.expect(stage, self.items)
            if exp is not None:
                remaining = max(exp - in_stage, 0.0)
        if remaining is None:
            return None
        later = STAGES[_INDEX[stage] + 1:] if stage in _INDEX else ()
        for s in later:
            exp = self.model.expect(s, self.items)
            if exp is None:
                return None
            remaining += exp
        return remaining if math.isfinite(remaining) else None
