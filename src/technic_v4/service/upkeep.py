"""What a long-running service does on its own: keep the store current and its health known.

:class:`Freshness` answers "does the provider have a session the store lacks?" without a
vendor request (``provider.latest_session()`` is a calendar computation or a pinned date), so
every scan submission can ask it before keying its job and result: a store that is behind never
serves yesterday's result from the job table or the result cache. A background thread checks
every ``refresh_interval_s`` and brings the store current when it is behind. When an update
could not get the provider's latest session (not published yet, a vendor fault), the store is
taken as current until ``refresh_interval_s`` has passed, so requests keep their caches instead
of each asking the vendor again.

:class:`Health` holds the status ``/health`` reports, refreshed by a background thread and
after every store change, so ``/health`` answers from memory: never waiting on Redis, the store,
a job or the thread pool.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from technic_v4 import __version__
from technic_v4.data.market import MarketData
from technic_v4.service.cache import DataVersion, ResultCache

log = logging.getLogger("technic_v4.service")


class Freshness:
    """Whether the store is behind its provider, and the update that brings it current."""

    def __init__(self, market: MarketData, data_version: DataVersion, interval_s: float,
                 on_change: Callable[[], None]) -> None:
        self.market = market
        self.data_version = data_version
        self.interval_s = interval_s
        self.on_change = on_change
        self.updating = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempt: tuple[dt.date, float] | None = None  # (target, time.monotonic())

    def _target(self) -> dt.date | None:
        latest = self.market.provider.latest_session()
        last = self.data_version.status()[1]["last_session"]
        return latest if last is None or last < latest else None

    def behind(self) -> dt.date | None:
        """The provider's latest session when the store does not have it yet and no update
        tried to get it within the interval, else None."""
        target = self._target()
        a = self._attempt
        if target is not None and a is not None and a[0] == target and \
                time.monotonic() - a[1] < self.interval_s:
            return None
        return target

    def attempted(self) -> None:
        """An update just ran (a scan's or ours): if the store is still behind, remember it."""
        try:
            target = self._target()
        except Exception:  # the next check asks again; never fail the caller (a scan's end)
            log.exception("checking whether the store is current failed")
            target = None
        self._attempt = None if target is None else (target, time.monotonic())

    def update(self) -> None:
        """Fetch what the store lacks (errors are kept for /health; scans retry the update)."""
        self.updating = True
        self.on_change()
        try:
            rep = self.market.ensure_current(progress=False)
            self.error = None
            if rep.sessions_fetched:
                log.info("store updated: %d sessions fetched", len(rep.sessions_fetched))
        except Exception as e:  # reported by /health; retried next interval and by scans
            self.error = f"{type(e).__name__}: {e}"
            log.exception("bringing the store up to date failed")
        finally:
            self.updating = False
            self.attempted()
            self.on_change()

    def start(self, update_now: bool) -> None:
        def loop() -> None:
            if update_now:
                self.update()
            while not self._stop.wait(self.interval_s):
                try:
                    due = self._target() is not None
                except Exception:  # e.g. a store being replaced: try again next interval
                    log.exception("checking whether the store is current failed")
                    continue
                if due:
                    self.update()

        self._thread = threading.Thread(target=loop, name="technic-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class Health:
    """The status ``/health`` reports, computed off the event loop (see module docstring)."""

    def __init__(self, market: MarketData, data_version: DataVersion, cache: ResultCache,
                 provider_name: str, interval_s: float = 2.0) -> None:
        self.market = market
        self.data_version = data_version
        self.cache = cache
        self.provider_name = provider_name
        self.interval_s = interval_s
        self.freshness: Freshness | None = None
        self._store: dict[str, Any] | None = None
        self._store_error: str | None = None
        self._redis: dict[str, Any] | None = None
        self._refreshed_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_store(self) -> None:
        try:
            version, s = self.data_version.status()
            store = {
                "path": s["path"], "last_session": s["last_session"],
                "first_session": s["first_session"], "sessions": s["sessions"],
                "symbols": s["symbols"], "bars": s["bars"],
                "size_bytes": self.market.store.size_bytes(), "version": s["version"],
                "data_version": version, "provider": self.provider_name,
            }
            err = None
        except Exception as e:  # health must answer, and say what is wrong
            log.exception("store status failed")
            store, err = None, f"{type(e).__name__}: {e}"
        with self._lock:
            self._store, self._store_error = store, err
            self._refreshed_at = time.time()

    def refresh_redis(self) -> None:
        r = self.cache.redis_status()
        with self._lock:
            self._redis = r

    def refresh(self) -> None:
        self.refresh_store()
        self.refresh_redis()

    def changed(self) -> None:
        """The store changed (or started or stopped updating): refresh the store part now."""
        self.refresh_store()

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.refresh()
                self.ready.set()
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="technic-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def body(self, jobs: dict[str, int], private: bool) -> tuple[dict[str, Any], int]:
        """(JSON body, HTTP status). Without ``private`` no filesystem path is shown."""
        with self._lock:
            store, err, redis = self._store, self._store_error, self._redis
            at = self._refreshed_at
        fr = self.freshness
        body: dict[str, Any] = {"status": "ok", "version": __version__,
                                "checked_at": None if at is None else dt.datetime.fromtimestamp(
                                    at, dt.UTC).isoformat(timespec="seconds")}
        if store is None:
            if err is None:  # not measured yet (start-up)
                body["status"] = "starting"
                body["store"] = {"state": "unknown"}
                return body, 200
            body.update(status="down", store={"state": "unavailable",
                                              "error": self._public(err, private)})
            return body, 503
        store = dict(store)
        if not private:
            del store["path"]
        updating = fr is not None and fr.updating
        store["state"] = "updating" if updating else \
            "ready" if store["last_session"] is not None else "empty"
        if fr is not None and fr.error:
            store["update_error"] = self._public(fr.error, private)
            body["status"] = "degraded"
        body["store"] = store
        if redis is not None:
            body["redis"] = redis
            if redis["status"] != "up":
                body["status"] = "degraded"
        body["jobs"] = jobs
        return body, 200

    def _public(self, text: str, private: bool) -> str:
        if private:
            return text
        for p in (str(self.market.store.path.parent), str(self.market.settings.data_dir)):
            text = text.replace(p, "<data_dir>")
        return text
