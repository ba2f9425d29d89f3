"""One store, many processes: readers never fail while an update runs; writers take turns.

Every test here starts real processes on one real DuckDB file (no mocks): a long-lived process
scanning in a loop (what `technic serve` does), a process that updates the store session by
session, a process that opens the store afresh for every scan (what each `technic scan` or
`technic data status` does), and two writers at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from technic_v4.data.calendar import sessions_between
from technic_v4.testing import make_market

EPOCH = dt.date(2025, 9, 2)
END_1 = dt.date(2026, 9, 1)  # what the readers' provider knows
END_2 = dt.date(2026, 10, 13)  # what the updater's provider knows: ~30 sessions more
N = 120

CHILD = textwrap.dedent("""
    import datetime as dt, json, sys, time
    from pathlib import Path
    from technic_v4 import data_engine
    from technic_v4.data.calendar import sessions_between
    from technic_v4.data.store import Store
    from technic_v4.scanner_core import run_scan

    mode, stop = sys.argv[1], Path(sys.argv[2])
    out = {"scans": 0, "versions": [], "sessions": []}

    def scan_once():
        md = data_engine.market()
        df, msg = run_scan(max_symbols=40, min_price=0, min_dollar_volume=0, min_market_cap=0)
        out["scans"] += 1
        out["versions"].append(md.store.version)
        out["sessions"].append(str(md.store.last_session()))

    if mode == "serve-loop":  # one process, one MarketData, scanning over and over
        while True:
            done = stop.exists()
            scan_once()
            if out["scans"] == 1:
                print("ready", flush=True)
            if done:
                break
    elif mode == "fresh-loop":  # a new MarketData (a new CLI process's worth) for every scan
        while True:
            done = stop.exists()
            data_engine.set_market(None)
            st = data_engine.market().store.status()  # what `technic data status` prints
            assert st["sessions"] > 0, st
            scan_once()
            if out["scans"] == 1:
                print("ready", flush=True)
            if done:
                break
    elif mode == "update":  # the only writer: one session per update, so many commits
        md = data_engine.market()
        for day in sessions_between(md.store.last_session() + dt.timedelta(days=1),
                                    md.provider.latest_session()):
            rep = md.ensure_current(through=day.astype(dt.date))
            assert len(rep.sessions_fetched) == 1, rep.as_dict()
            out["versions"].append(md.store.version)
        out["sessions"].append(str(md.store.last_session()))
    elif mode == "hold":  # a writer that keeps the writer lock until told to let go
        store = Store(Path(sys.argv[3]))
        with store.writing():
            print("holding", flush=True)
            while not stop.exists():
                time.sleep(0.01)
    print(json.dumps(out), flush=True)
""")


def _env(data_dir: Path, end: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHNIC_")}
    env.update(TECHNIC_DATA_DIR=str(data_dir), TECHNIC_SYNTHETIC_LISTINGS=str(N),
               TECHNIC_SYNTHETIC_SEED="7", TECHNIC_SYNTHETIC_EPOCH=str(EPOCH),
               TECHNIC_SYNTHETIC_END=str(end), TECHNIC_PROGRESS="false")
    return env


def _start(script: Path, mode: str, stop: Path, env: dict[str, str], *extra: str
           ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script), mode, str(stop), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != word:
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"expected {word!r}, got {line!r}{out}\n{err}")


def _finish(proc: subprocess.Popen[str]) -> tuple[dict[str, list], str]:  # type: ignore[type-arg]
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A store filled through END_1 (by this process, which then lets go of it)."""
    data = tmp_path / "data"
    md = make_market(data, n=N, epoch=EPOCH, end=END_1, seed=7)
    md.ensure_current()
    md.close()
    return data


@pytest.mark.slow
def test_readers_never_fail_while_another_process_updates(built: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stop = tmp_path / "stop"
    serve = _start(script, "serve-loop", stop, _env(built, END_1))
    fresh = _start(script, "fresh-loop", stop, _env(built, END_1))
    try:
        _wait_for(serve, "ready")
        _wait_for(fresh, "ready")
        # The readers are running: now the writer appends ~30 sessions, one commit each.
        update = _start(script, "update", stop, _env(built, END_2))
        upd, _ = _finish(update)
        stop.touch()  # each reader scans once more after this and then stops
        served, _ = _finish(serve)
        fresh_out, _ = _finish(fresh)
    finally:
        for p in (serve, fresh):
            if p.poll() is None:
                p.kill()
                p.communicate()
    want = sessions_between(END_1 + dt.timedelta(days=1), END_2)
    assert len(upd["versions"]) == len(want) > 20
    assert upd["sessions"] == [str(want[-1].astype(dt.date))]
    for got in (served, fresh_out):
        # Every scan succeeded (a failure exits non-zero), the readers saw the store move, and
        # the last scan, started after the update finished, saw all of it.
        assert got["scans"] >= 2
        assert got["versions"] == sorted(got["versions"])
        assert got["versions"][-1] == upd["versions"][-1]
        assert got["sessions"][-1] == upd["sessions"][0]
    assert served["versions"][0] < upd["versions"][0]


@pytest.mark.slow
def test_a_second_writer_waits_and_says_so(built: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    release = tmp_path / "release"
    store_path = next(built.glob("*.duckdb"))
    holder = _start(script, "hold", release, _env(built, END_1), str(store_path))
    try:
        _wait_for(holder, "holding")
        # `technic data update` while the other writer holds the lock: it waits, and says so.
        cli = subprocess.Popen(
            [sys.executable, "-c", "from technic_v4.cli import main; main()", "data", "update"],
            env=_env(built, END_2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert cli.stderr is not None
        first = cli.stderr.readline()
        assert "waiting for another process that is updating the store" in first, first
        assert cli.poll() is None  # still waiting: the lock is held
        # Meanwhile a reader in yet another process is not held up by the waiting writers.
        status = subprocess.run(
            [sys.executable, "-c", "from technic_v4.cli import main; main()", "data", "status"],
            env=_env(built, END_1), capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["last_session"] == str(END_1)
        release.touch()
        _, err = cli.communicate(timeout=300)
        assert cli.returncode == 0, err
        _finish(holder)
    finally:
        for p in (holder,):
            if p.poll() is None:
                p.kill()
                p.communicate()
    md = make_market(built, n=N, epoch=EPOCH, end=END_2, seed=7)
    np.testing.assert_array_equal(md.store.stored_sessions()[-3:],
                                  sessions_between(EPOCH, END_2)[-3:])
    md.close()


def test_a_scan_does_not_wait_for_another_process_update(tmp_path: Path) -> None:
    """Another process holds the writer lock (a long, rate-limited fill): a scan that finds a
    session missing does not wait for it; it scans what is stored and says so. `technic data
    update` (a writer) still waits: see the test above."""
    from technic_v4 import pipeline
    from technic_v4.config.scan import ScanConfig

    md = make_market(tmp_path, n=100, end=dt.date(2026, 11, 20))
    md.ensure_current()
    md.close()
    lock = str(md.store.path) + ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom filelock import FileLock\n"
         f"held = FileLock({lock!r})\nheld.acquire()\nprint('locked', flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        newer = make_market(tmp_path, n=100, end=dt.date(2026, 11, 23))  # one more session
        res = pipeline.scan(ScanConfig(max_symbols=5), newer)
        assert res.stats["as_of"] == "2026-11-20" and len(res.frame) > 0
        assert res.stats["update"]["busy"] and "another process is updating" in res.message
        assert newer.store.last_session() == dt.date(2026, 11, 20)  # nothing written
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    # The lock released: the next scan brings the store current.
    res = pipeline.scan(ScanConfig(max_symbols=5), newer)
    assert res.stats["as_of"] == "2026-11-23" and not res.stats["update"]["busy"]
    newer.close()
