"""The scheduler: fire times after each close (holidays, early closes), catch-up of missed
sessions oldest first, and one runner per session among two real processes on one real Redis."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from daily_support import Receiver, Recorder

from technic_v4.daily.run import run_session
from technic_v4.daily.schedule import MAX_CATCH_UP, LocalElection, Scheduler
from technic_v4.daily.state import StateStore
from technic_v4.data.market import MarketData
from technic_v4.testing import RedisServer, make_market

END = dt.date(2026, 11, 20)
EPOCH = dt.date(2025, 6, 2)
UTC = dt.UTC
WHERE = "close > sma(close, 5)"


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = make_market(tmp_path_factory.mktemp("sched"), n=200, end=END, epoch=EPOCH)
    m.ensure_current()
    yield m
    m.close()


def test_fires_delay_after_each_close_skipping_holidays_and_early_closes(
        md: MarketData, tmp_path: Path) -> None:
    s = Scheduler(md, StateStore(tmp_path), delay_min=30, election=LocalElection())
    # Wed 2026-11-25 closes 16:00 ET (21:00 UTC); Thanksgiving is a holiday; Friday closes early
    # at 13:00 ET (18:00 UTC).
    assert s.latest_due(dt.datetime(2026, 11, 25, 21, 29, tzinfo=UTC)) == dt.date(2026, 11, 24)
    assert s.next_fire(dt.datetime(2026, 11, 25, 21, 29, tzinfo=UTC)) == \
        dt.datetime(2026, 11, 25, 21, 30, tzinfo=UTC)
    assert s.next_fire(dt.datetime(2026, 11, 25, 21, 31, tzinfo=UTC)) == \
        dt.datetime(2026, 11, 27, 18, 30, tzinfo=UTC)
    # Saturday: the next fire is Monday's close + 30 minutes.
    assert s.next_fire(dt.datetime(2026, 11, 28, 12, tzinfo=UTC)) == \
        dt.datetime(2026, 11, 30, 21, 30, tzinfo=UTC)


def test_catch_up_runs_missed_sessions_oldest_first_bounded(md: MarketData,
                                                           tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    st.put_target({"name": "t", "kind": "webhook", "url": "http://x/"})
    st.put_screen("old", {"where": WHERE}, True, ["t"])
    stored = [d.astype(dt.date) for d in md.store.stored_sessions()]
    first = stored[-9]  # the service was down for 8 sessions after this run
    run_session(first, state=st, data=md, send=Recorder(), update=False)
    st.put_screen("new", {"where": WHERE}, True, ["t"])
    rec = Recorder()
    s = Scheduler(md, st, delay_min=30, send=rec, election=LocalElection())
    # Long after END: the provider (pinned at END) has nothing newer.
    reports = s.tick(dt.datetime(2026, 11, 29, 12, tzinfo=UTC))
    assert [r.session for r in reports] == stored[-MAX_CATCH_UP:]
    old = [r for r in st.runs("old", limit=20) if r.session > first]
    assert sorted(r.session for r in old) == stored[-MAX_CATCH_UP:]
    assert {r.session: r.catch_up for r in old} == {d: d != END for d in stored[-5:]}
    assert [r.session for r in st.runs("new")] == [END]  # a new screen starts with today
    assert {m.catch_up for _, m in rec.calls if m.session < END} <= {True}
    assert s.tick(dt.datetime(2026, 11, 29, 12, tzinfo=UTC)) == []  # nothing left


CHILD = textwrap.dedent("""
    import datetime as dt, sys
    sys.path.insert(0, sys.argv[1])
    from daily_support import webhook_send
    from technic_v4 import data_engine
    from technic_v4.daily.schedule import Scheduler
    s = Scheduler(data_engine.market(), send=webhook_send)
    reports = s.tick(dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC))
    print("ran", [str(r.session) for r in reports], "idle", [str(d) for d in s.idle])
""")


def test_two_instances_on_one_redis_elect_one_runner(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    here = str(Path(__file__).parent)
    with RedisServer() as redis, Receiver() as rx:
        procs = []
        for i in (1, 2):
            # Separate data dirs: only the Redis election keeps the second from running.
            data = tmp_path / f"data{i}"
            st = StateStore(data)
            st.put_target({"name": "hook", "kind": "webhook", "url": rx.url})
            st.put_screen("a", {"where": WHERE}, True, ["hook"])
            env = {**os.environ, "TECHNIC_DATA_DIR": str(data), "TECHNIC_REDIS_URL": redis.url,
                   "TECHNIC_SYNTHETIC_LISTINGS": "200", "TECHNIC_SYNTHETIC_EPOCH": str(EPOCH),
                   "TECHNIC_SYNTHETIC_END": str(END), "TECHNIC_PROGRESS": "false"}
            procs.append(subprocess.Popen([sys.executable, str(script), here], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        lines = sorted(o.strip().splitlines()[-1] for o, _ in outs)
        assert lines == ["ran ['2026-11-20'] idle []", "ran [] idle ['2026-11-20']"]
        assert [b["screen"] for b in rx.bodies] == ["a"]  # one runner, one notification


def test_the_loop_outlives_a_failed_tick_and_stops_at_once(md: MarketData,
                                                           tmp_path: Path) -> None:
    import logging
    import threading

    from technic_v4.daily.schedule import RedisElection
    from technic_v4.testing import free_port

    st = StateStore(tmp_path)
    st.put_screen("a", {"where": WHERE}, True, [])
    # Nothing listens there: electing a runner fails, the tick with it.
    s = Scheduler(md, st, delay_min=30, send=Recorder(),
                  election=RedisElection(f"redis://127.0.0.1:{free_port()}/0"),
                  clock=lambda: dt.datetime(2026, 11, 29, 12, tzinfo=UTC))
    failed = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "daily run failed" in record.getMessage():
                failed.set()

    handler = Seen()
    logging.getLogger("technic_v4.daily.schedule").addHandler(handler)
    try:
        t = s.start()
        assert failed.wait(60)
        assert t.is_alive()  # sleeping until the retry, not dead
        s.stop.set()
        t.join(30)
        assert not t.is_alive()
    finally:
        logging.getLogger("technic_v4.daily.schedule").removeHandler(handler)
    assert st.runs("a") == []


def test_the_lease_is_renewed_while_a_long_run_lasts() -> None:
    import time

    from technic_v4.daily.schedule import RedisElection

    with RedisServer() as redis:
        first = RedisElection(redis.url, lease_s=0.6)
        second = RedisElection(redis.url, lease_s=0.6)
        with first.hold(END) as won:
            assert won
            time.sleep(2.0)  # a run lasting several leases: the renewals keep it held
            with second.hold(END) as also:
                assert not also  # the other instance stays idle while the first still runs


def test_an_instance_that_lost_to_a_runner_that_died_runs_the_session_soon(
        md: MarketData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from technic_v4.daily import schedule
    from technic_v4.daily.schedule import RedisElection

    monkeypatch.setattr(schedule, "RETRY_UNSTORED_S", 1.0)
    st = StateStore(tmp_path)
    st.put_screen("a", {"where": WHERE}, True, [])
    with RedisServer() as redis:
        other = RedisElection(redis.url, lease_s=600)
        lock = other.client.lock(f"{other.prefix}:lock:{END}", timeout=600, thread_local=False)
        assert lock.acquire(blocking=False)  # another instance is running END ...
        # The evening of END (a Friday), after its fire time: END is the latest due session.
        s = Scheduler(md, st, delay_min=30, send=Recorder(), election=RedisElection(redis.url),
                      clock=lambda: dt.datetime(2026, 11, 20, 23, tzinfo=UTC))
        t = s.start()
        try:
            deadline = time.monotonic() + 60
            while END not in s.idle and time.monotonic() < deadline:
                time.sleep(0.05)
            assert END in s.idle
            lock.release()  # ... and dies before finishing: its lease is gone, no done marker
            while not st.runs("a") and time.monotonic() < deadline:
                time.sleep(0.05)
            # Not after Monday's close but a retry soon after.
            assert [r.session for r in st.runs("a")] == [END]
        finally:
            s.stop.set()
            t.join(30)


def test_a_screen_enabled_again_is_not_back_filled_for_the_sessions_it_was_off(
        md: MarketData, tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    st.put_screen("a", {"where": WHERE}, True, [])
    stored = [d.astype(dt.date) for d in md.store.stored_sessions()]
    run_session(stored[-9], state=st, data=md, send=Recorder(), update=False)
    st.put_screen("a", {"where": WHERE}, False, [], replace=True)  # off for 8 sessions ...
    st.put_screen("a", {"where": WHERE}, True, [], replace=True)  # ... and on again now
    s = Scheduler(md, st, delay_min=30, send=Recorder(), election=LocalElection())
    reports = s.tick(dt.datetime(2026, 11, 29, 12, tzinfo=UTC))
    assert [r.session for r in reports] == [END]  # today's run, not 5 catch-ups
    assert [r.session for r in st.runs("a")] == [END, stored[-9]]
