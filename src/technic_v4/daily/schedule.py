"""The scheduler: the daily run fires ``TECHNIC_SCHEDULE_DELAY_MIN`` minutes after each NYSE
close (``data/calendar.py``: exchange_calendars, so holidays and early closes are respected).

One loop (:meth:`Scheduler.run_forever`): run what is due (:meth:`Scheduler.tick`), then sleep
until the next session's fire time, waking at once when asked to stop. The first tick of a
start catches up: each enabled screen (and watchlist) without a run of a due session gets one,
oldest session first, at most ``MAX_CATCH_UP`` sessions back, each marked ``catch_up`` but
the latest. A screen that has never run starts with the latest session (no back-fill).

Several instances sharing one Redis (``TECHNIC_REDIS_URL``) elect one runner per session: a
Redis lock with a lease (redis-py's ``Lock``, renewed while the run lasts, so a dead runner's
lease lapses), and a ``done`` marker once the session ran. The others stay idle for it.
Without Redis, runs in one data dir take turns through a file lock (``daily/run.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from technic_v4.daily.run import WATCHLIST_PREFIX, Sender, SessionReport, resume, run_session
from technic_v4.daily.state import StateStore
from technic_v4.data import calendar
from technic_v4.data.market import MarketData
from technic_v4.errors import TechnicError

log = logging.getLogger(__name__)

MAX_CATCH_UP = 5  # sessions back a start catches up at most
RETRY_UNSTORED_S = 600.0  # a due session not published yet, or a failed tick: look again


class LocalElection:
    """No Redis: this instance runs every session."""

    @contextlib.contextmanager
    def hold(self, session: dt.date) -> Iterator[bool]:
        yield True

    def done(self, session: dt.date) -> bool:
        return True


class RedisElection:
    """One runner per session among instances sharing a Redis (see module docstring)."""

    def __init__(self, url: str, lease_s: float = 60.0, prefix: str = "technic:daily") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.lease_s = lease_s
        self.prefix = prefix

    def done(self, session: dt.date) -> bool:
        """Whether an instance finished ``session`` (else a lost election may be a runner that
        died before its lease lapsed: look again soon)."""
        return bool(self.client.exists(f"{self.prefix}:done:{session}"))

    @contextlib.contextmanager
    def hold(self, session: dt.date) -> Iterator[bool]:
        done = f"{self.prefix}:done:{session}"
        if self.client.exists(done):
            yield False
            return
        # Not thread-local: the renewal thread extends the lease with the token acquired here.
        lock = self.client.lock(f"{self.prefix}:lock:{session}", timeout=self.lease_s,
                                blocking=False, thread_local=False)
        if not lock.acquire():
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_s / 3):
                try:
                    lock.extend(self.lease_s, replace_ttl=True)
                except Exception as e:  # noqa: BLE001 - redis or lock errors: the lease may lapse
                    log.warning("could not renew the daily-run lease for %s: %s", session, e)

        t = threading.Thread(target=renew, name=f"lease-{session}", daemon=True)
        t.start()
        try:
            yield True
            self.client.set(done, "1", ex=14 * 86400)
        finally:
            stop.set()
            t.join()
            try:
                lock.release()
            except Exception as e:  # noqa: BLE001 - an expired lease is released already
                log.warning("daily-run lease for %s was lost before release: %s", session, e)


class Scheduler:
    """Fires the daily run after each close (see module docstring)."""

    def __init__(self, data: MarketData, state: StateStore | None = None, *,
                 delay_min: float | None = None, send: Sender | None = None,
                 election: Any = None, link: str | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.data = data
        self.state = state or StateStore(data.settings.data_dir)
        self.delay = dt.timedelta(minutes=data.settings.schedule_delay_min if delay_min is None
                                  else delay_min)
        self.send = send
        if election is None:
            url = data.settings.redis_url
            election = RedisElection(url) if url else LocalElection()
        self.election = election
        self.link = link if link is not None else data.settings.public_url
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.stop = threading.Event()
        self.last: list[SessionReport] = []
        self.idle: list[dt.date] = []  # sessions another instance ran
        self.unsettled = False  # the last tick lost an election for a session not done yet

    # -- what is due ---------------------------------------------------------------------------
    def latest_due(self, now: dt.datetime) -> dt.date:
        """The latest session whose fire time (close + delay) has passed."""
        return calendar.latest_completed_session(now - self.delay)

    def next_fire(self, now: dt.datetime) -> dt.datetime:
        """The first fire time after ``now``."""
        day = calendar.next_session(self.latest_due(now))
        return calendar.close_time(day) + self.delay

    def due(self, latest: dt.date) -> list[tuple[dt.date, list[str]]]:
        """Sessions (oldest first, at most ``MAX_CATCH_UP``, stored ones up to ``latest``) and
        the screens and watchlists that lack a run of each."""
        stored = self.data.store.stored_sessions()
        window = [d.astype(dt.date) for d in
                  stored[stored <= np.datetime64(latest, "D")][-MAX_CATCH_UP:]]
        if not window:
            return []
        names = [(s["name"], s["updated_at"]) for s in self.state.screens(enabled_only=True)]
        names += [(WATCHLIST_PREFIX + w["name"], w["updated_at"])
                  for w in self.state.watchlists()]
        last = self.state.last_sessions()
        lasts = self.state.runs_at([n for n, _ in names if n in last],
                                   sorted({last[n] for n, _ in names if n in last}))
        todo: dict[dt.date, list[str]] = {}
        for name, updated in names:
            ran = last.get(name)
            days = window[-1:] if ran is None else [d for d in window if d > ran]
            prev = None if ran is None else lasts.get((name, ran))
            if prev is not None and updated > prev.started_at:
                # Enabled again (or edited, re-created) since its last run: the sessions it was
                # off for were not missed; no back-fill before the change, as for a new screen.
                days = [d for d in days if d == window[-1] or
                        calendar.close_time(d).replace(tzinfo=None) + self.delay >= updated]
            for d in days:
                todo.setdefault(d, []).append(name)
        return sorted(todo.items())

    # -- running -------------------------------------------------------------------------------
    def tick(self, now: dt.datetime | None = None) -> list[SessionReport]:
        """Update the store, then run every due session this instance is elected for."""
        now = now or self.clock()
        self.unsettled = False
        self.data.ensure_current()
        latest = min(self.latest_due(now), self.data.store.last_session() or dt.date.min)
        reports = []
        for session, names in self.due(latest):
            if self.stop.is_set():
                break
            with self.election.hold(session) as won:
                if not won:
                    log.info("daily run of %s: another instance runs it; idle", session)
                    self.idle.append(session)
                    self.unsettled |= not self.election.done(session)
                    continue
                rep = run_session(session, catch_up=session != latest, state=self.state,
                                  data=self.data, send=self.send, names=names,
                                  link=self.link, update=False)
                log.info("daily run of %s: %s", session, rep.as_dict())
                reports.append(rep)
        if not reports and self.state.outbox("pending", limit=1):
            with self.election.hold(latest) as won:  # rows a killed run left behind
                if won:
                    resume(self.state, self.send)
                else:
                    self.unsettled |= not self.election.done(latest)
        self.last = reports
        return reports

    def run_forever(self) -> None:
        """Tick, sleep until the next fire time, repeat; returns soon after :meth:`stop` is set."""
        while not self.stop.is_set():
            failed = False
            try:
                self.tick()
            except TechnicError as e:
                log.error("daily run failed: %s; trying again in %.0f s", e, RETRY_UNSTORED_S)
                failed = True
            except Exception:  # Redis down, a bug: the loop must outlive one bad tick
                log.exception("daily run failed; trying again in %.0f s", RETRY_UNSTORED_S)
                failed = True
            now = self.clock()
            wait = (self.next_fire(now) - now).total_seconds()
            last = self.data.store.last_session()
            if failed or self.unsettled or (last is not None and last < self.latest_due(now)):
                # published late, failed, or another runner has not finished: look again soon
                wait = min(wait, RETRY_UNSTORED_S)
            log.info("next daily run in %.0f s", wait)
            self.stop.wait(max(1.0, wait))

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run_forever, name="technic-scheduler", daemon=True)
        t.start()
        return t
