"""The DuckDB store: exact roundtrips, replacement, unknown symbols, versions, crash safety."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from technic_v4.data.bars import DROP_REASONS, FIELDS, BarBatch, ValidationReport
from technic_v4.data.calendar import sessions_between
from technic_v4.data.store import Store
from technic_v4.errors import StoreError

EPOCH_DAY = np.datetime64("1970-01-01", "D")


def make_ref(symbols: list[str], list_date: str = "2010-05-04") -> pd.DataFrame:
    n = len(symbols)
    return pd.DataFrame({
        "Symbol": symbols, "Name": [f"{s} Inc." for s in symbols], "Type": ["Common Stock"] * n,
        "Exchange": ["NYSE"] * n, "Sector": ["Energy"] * n,
        "Industry": ["Oil, Gas & Consumable Fuels"] * n,
        "SharesOutstanding": np.arange(1, n + 1) * 1e6,
        "ListDate": pd.to_datetime([list_date] * n),
    })


def make_bars(symbols: list[str], sessions: np.ndarray, seed: int = 0) -> BarBatch:
    """Every symbol on every session, with distinct random prices (exact floats)."""
    rng = np.random.default_rng(seed)
    sym = np.tile(np.asarray(symbols, dtype=object), len(sessions))
    date = np.repeat(np.asarray(sessions, dtype="datetime64[D]"), len(symbols))
    close = np.round(rng.uniform(5, 500, len(sym)), 2)
    return BarBatch(sym, date, close * 0.99, close * 1.02, close * 0.97, close,
                    np.round(rng.uniform(0, 1e6, len(sym))))


def report_for(b: BarBatch) -> ValidationReport:
    return ValidationReport(rows_in=len(b), rows_kept=len(b))


def frame_of(loaded: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(loaded).sort_values(["day", "sid"]).reset_index(drop=True)


def expected_frame(b: BarBatch, sid_of: dict[str, int]) -> pd.DataFrame:
    df = pd.DataFrame({"sid": [sid_of[s] for s in b.symbol],
                       "day": (b.date - EPOCH_DAY).astype(np.int64),
                       **{f: getattr(b, f) for f in FIELDS}})
    return df.sort_values(["day", "sid"]).reset_index(drop=True)


def assert_frames(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == ["sid", "day", *FIELDS]
    assert len(got) == len(want)
    for c in got.columns:
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy(), err_msg=c)


SYMS = ["AAA", "BBB", "CCC", "DDD"]
SESS = sessions_between(dt.date(2025, 3, 3), dt.date(2025, 3, 14))  # 10 sessions


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.duckdb")
    yield s
    s.close()


def test_empty_store(store: Store) -> None:
    assert store.version == 0
    assert store.last_session() is None
    assert len(store.stored_sessions()) == 0
    assert store.stored_sessions().dtype == np.dtype("datetime64[D]")
    assert len(store.reference()) == 0
    st = store.status()
    assert st["bars"] == 0
    assert st["symbols"] == 0
    assert st["sessions"] == 0
    assert st["first_session"] is None
    assert st["last_session"] is None
    assert st["version"] == 0


def test_reference_roundtrip_and_stable_sids(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    ref = store.reference()
    assert ref["sid"].tolist() == [0, 1, 2, 3]
    assert ref["Symbol"].tolist() == SYMS
    assert ref["Name"].tolist() == [f"{s} Inc." for s in SYMS]
    assert ref["SharesOutstanding"].tolist() == [1e6, 2e6, 3e6, 4e6]
    assert pd.to_datetime(ref["ListDate"]).dt.date.tolist() == [dt.date(2010, 5, 4)] * 4
    # A second upsert: a new symbol gets the next sid, a known one keeps its sid and is updated.
    upd = make_ref(["CCC", "EEE"])
    upd.loc[0, "Name"] = "CCC Renamed Corp."
    upd.loc[0, "SharesOutstanding"] = 7.5e6
    store.upsert_reference(upd)
    ref = store.reference()
    assert ref["Symbol"].tolist() == [*SYMS, "EEE"]
    assert ref["sid"].tolist() == [0, 1, 2, 3, 4]
    row = ref[ref["Symbol"] == "CCC"].iloc[0]
    assert row["sid"] == 2
    assert row["Name"] == "CCC Renamed Corp."
    assert row["SharesOutstanding"] == 7.5e6


def test_append_and_load_roundtrip(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS)
    stored = store.append_sessions(b, SESS, report_for(b))
    assert stored == len(b) == 40
    got = store.load_range(dt.date(2025, 3, 3), dt.date(2025, 3, 14))
    assert np.issubdtype(got["day"].dtype, np.integer)
    assert got["day"].min() == (dt.date(2025, 3, 3) - dt.date(1970, 1, 1)).days == 20150
    assert_frames(frame_of(got), expected_frame(b, {s: i for i, s in enumerate(SYMS)}))
    # A sub-range is exactly the bars in it (both bounds inclusive).
    part = frame_of(store.load_range(dt.date(2025, 3, 5), dt.date(2025, 3, 7)))
    keep = np.flatnonzero((b.date >= np.datetime64("2025-03-05")) & (b.date <= np.datetime64(
        "2025-03-07")))
    assert_frames(part, expected_frame(b.take(keep), {s: i for i, s in enumerate(SYMS)}))
    assert len(store.load_range(dt.date(2025, 3, 15), dt.date(2025, 3, 20))["sid"]) == 0


def test_persistence_across_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "p.duckdb")
    s.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS)
    s.append_sessions(b, SESS, report_for(b))
    before = frame_of(s.load_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31)))
    v = s.version
    s.close()
    s2 = Store(tmp_path / "p.duckdb")
    try:
        assert s2.version == v
        assert_frames(frame_of(s2.load_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31))), before)
        np.testing.assert_array_equal(s2.stored_sessions(), SESS)
    finally:
        s2.close()


def test_replacing_a_session_replaces_its_bars(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    sid_of = {s: i for i, s in enumerate(SYMS)}
    b = make_bars(SYMS, SESS, seed=1)
    store.append_sessions(b, SESS, report_for(b))
    # Re-fetch sessions 3 and 4 with new prices and without DDD.
    redo = SESS[3:5]
    nb = make_bars(SYMS[:3], redo, seed=2)
    assert store.append_sessions(nb, redo, report_for(nb)) == 6
    got = frame_of(store.load_range(SESS[0].astype(dt.date), SESS[-1].astype(dt.date)))
    old_rows = b.take(np.flatnonzero(~np.isin(b.date, redo)))
    assert_frames(got, expected_frame(BarBatch.concat([old_rows, nb]), sid_of))
    np.testing.assert_array_equal(store.stored_sessions(), SESS)
    rows = dict(store.fetchall("SELECT date, rows FROM sessions"))
    assert rows[dt.date(2025, 3, 6)] == 3
    assert rows[dt.date(2025, 3, 5)] == 4
    assert store.status()["bars"] == 38


def test_unknown_symbols_are_not_stored(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars([*SYMS, "ZZZ", "YYY"], SESS[:2])
    rep = report_for(b)
    rep.dropped["non_finite"] = 3  # validation's own counts are kept
    rep.rows_in += 3
    n = store.append_sessions(b, SESS[:2], rep)
    assert n == 8
    assert rep.dropped["unknown_symbol"] == 4
    assert rep.dropped["non_finite"] == 3
    assert rep.rows_kept == 8
    got = store.load_range(SESS[0].astype(dt.date), SESS[1].astype(dt.date))
    assert sorted(set(got["sid"].tolist())) == [0, 1, 2, 3]
    assert len(got["sid"]) == 8
    assert store.status()["symbols"] == 4
    assert len(store.reference()) == 4  # unknown symbols do not get a sid either
    # The ingest log records the drop.
    logged = store.fetchall(
        "SELECT first_session, last_session, n_sessions, rows_in, rows_kept, dropped "
        "FROM ingest_log")
    assert len(logged) == 1
    first, last, n_sess, rows_in, rows_kept, dropped = logged[0]
    assert (first, last, n_sess) == (dt.date(2025, 3, 3), dt.date(2025, 3, 4), 2)
    assert (rows_in, rows_kept) == (15, 8)
    assert json.loads(dropped) == dict.fromkeys(DROP_REASONS, 0) | {"non_finite": 3,
                                                                    "unknown_symbol": 4}


def test_session_without_bars_is_still_recorded(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS[:1])
    store.append_sessions(b, SESS[:2], report_for(b))  # session 2 had no rows at all
    np.testing.assert_array_equal(store.stored_sessions(), SESS[:2])
    rows = dict(store.fetchall("SELECT date, rows FROM sessions"))
    assert rows == {SESS[0].astype(dt.date): 4, SESS[1].astype(dt.date): 0}


def test_version_increments_on_every_write(store: Store) -> None:
    assert store.version == 0
    store.upsert_reference(make_ref(SYMS))
    assert store.version == 1
    for i in range(3):
        b = make_bars(SYMS, SESS[i:i + 1])
        store.append_sessions(b, SESS[i:i + 1], report_for(b))
        assert store.version == 2 + i
    store.upsert_reference(make_ref(["EEE"]))
    assert store.version == 5
    # Reads do not change it.
    store.load_range(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    store.reference()
    store.status()
    assert store.version == 5


def test_stored_sessions_last_session_status(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    # Out-of-order batches, and duplicated session dates in the argument.
    later, earlier = SESS[6:], SESS[:3]
    for part in (later, earlier):
        b = make_bars(SYMS, part)
        store.append_sessions(b, np.concatenate([part, part[:1]]), report_for(b))
    want = np.concatenate([earlier, later])
    got = store.stored_sessions()
    assert got.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(got, want)
    assert store.last_session() == dt.date(2025, 3, 14)
    assert type(store.last_session()) is dt.date
    st = store.status()
    assert st["sessions"] == 7
    assert st["bars"] == 28
    assert st["symbols"] == 4
    assert st["first_session"] == dt.date(2025, 3, 3)
    assert st["last_session"] == dt.date(2025, 3, 14)
    assert st["version"] == 3
    assert st["path"] == str(store.path)
    assert st["size_bytes"] > 0


def test_load_last_bars(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS)
    # DDD trades only on sessions 0, 2, 5 (gaps); CCC only from session 4 on.
    drop = ((b.symbol == "DDD") & ~np.isin(b.date, SESS[[0, 2, 5]])) | (
        (b.symbol == "CCC") & (b.date < SESS[4]))
    b = b.take(np.flatnonzero(~drop))
    store.append_sessions(b, SESS, report_for(b))
    got = frame_of(store.load_last_bars(np.array([3, 2]), SESS[8].astype(dt.date), 3))
    # The contract is "at least the last n bars up to end": keep each sid's last 3 here.
    got = got.sort_values(["sid", "day"]).groupby("sid").tail(3)
    got = got.sort_values(["day", "sid"]).reset_index(drop=True)
    sid_of = {s: i for i, s in enumerate(SYMS)}
    want_idx = np.flatnonzero(((b.symbol == "DDD") & np.isin(b.date, SESS[[0, 2, 5]]))
                              | ((b.symbol == "CCC") & np.isin(b.date, SESS[6:9])))
    assert_frames(got, expected_frame(b.take(want_idx), sid_of))


def test_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="TECHNIC_DATA_DIR"):
        Store(blocker / "sub" / "t.duckdb")


# -- crash safety --------------------------------------------------------------------------------

# The child writes a big batch into a store that already holds some sessions. Its DuckDB
# connection is wrapped only to announce each statement on stdout (so the parent knows where the
# write is), to stop for good right before one statement ("pause"), or to stop right after the bars
# INSERT ("hold": a late kill still lands before the COMMIT). The Store itself runs unchanged.
CHILD = textwrap.dedent("""
    import datetime as dt, sys, time
    import numpy as np
    from technic_v4.data.bars import BarBatch, ValidationReport
    from technic_v4.data.calendar import sessions_between
    from technic_v4.data.store import Store

    path, n_sym, start, n_sess, pause, hold = sys.argv[1:7]
    n_sym, n_sess = int(n_sym), int(n_sess)


    class Announcing:
        def __init__(self, con):
            self._c = con

        def execute(self, query, *args):
            print("stmt", query[:40], flush=True)
            if pause != "-" and query.startswith(pause):
                print("paused", flush=True)
                time.sleep(600)
            res = self._c.execute(query, *args)
            if hold != "-" and query.startswith(hold):
                print("held", flush=True)
                time.sleep(600)
            return res

        def __getattr__(self, name):
            return getattr(self._c, name)


    class AnnouncingStore(Store):
        def _open(self, read_only):
            con = super()._open(read_only)
            return con if read_only else Announcing(con)


    store = AnnouncingStore(path)
    syms = store.reference()["Symbol"].to_numpy(object)[:n_sym]
    sess = sessions_between(dt.date.fromisoformat(start), dt.date(2040, 1, 1))[:n_sess]
    rng = np.random.default_rng(99)
    sym = np.tile(syms, len(sess))
    date = np.repeat(sess, len(syms))
    close = np.round(rng.uniform(5, 500, len(sym)), 2)
    b = BarBatch(sym, date, close, close * 1.01, close * 0.99, close, np.full(len(sym), 7.0))
    rep = ValidationReport(rows_in=len(b), rows_kept=len(b))
    print("writing", len(b), flush=True)
    store.append_sessions(b, sess, rep)
    print("done", flush=True)
""")

CRASH_SYMS = [f"S{i:04d}" for i in range(3000)]
OLD_SESS = sessions_between(dt.date(2021, 1, 4), dt.date(2021, 1, 29))
NEW_START = "2021-02-01"

CRASH_CASES = {
    # (sessions in the batch, statement to pause before, statement to hold after, kill as soon
    # as a line starts with ...). 1,000 x 3,000 = 3,000,000 rows take seconds to prepare and
    # insert, so the first two kills land in append_sessions' preparation and in the bars INSERT.
    "before-append": (1000, "-", "INSERT INTO bars", "writing"),
    "during-bars-insert": (1000, "-", "INSERT INTO bars", "stmt INSERT INTO bars"),
    "bars-inserted": (100, "INSERT INTO sessions", "-", "paused"),
    "before-commit": (100, "COMMIT", "-", "paused"),
}


def _old_store(path: Path) -> tuple[pd.DataFrame, int]:
    s = Store(path)
    try:
        s.upsert_reference(make_ref(CRASH_SYMS))
        old = make_bars(CRASH_SYMS[:500], OLD_SESS, seed=5)
        s.append_sessions(old, OLD_SESS, report_for(old))
        return frame_of(s.load_range(dt.date(2000, 1, 1), dt.date(2040, 1, 1))), s.version
    finally:
        s.close()


def _run_and_kill(script: Path, path: Path, n_sess: int, pause: str, hold: str,
                  kill_at: str) -> str:
    """Start the child, SIGKILL it as soon as it prints ``kill_at``; return what it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(len(CRASH_SYMS)), NEW_START, str(n_sess),
         pause, hold], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(kill_at):
                os.kill(proc.pid, signal.SIGKILL)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    seen.append(out)
    # The child really was killed before it finished; if it ever finishes first, make the
    # batch bigger rather than accept it.
    assert proc.returncode == -signal.SIGKILL, ("".join(seen), err)
    return "".join(seen)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CRASH_CASES))
def test_killed_write_leaves_store_consistent(tmp_path: Path, case: str) -> None:
    n_sess, pause, hold, kill_at = CRASH_CASES[case]
    path = tmp_path / "crash.duckdb"
    before, v0 = _old_store(path)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    printed = _run_and_kill(script, path, n_sess, pause, hold, kill_at)
    assert "done" not in printed
    # The COMMIT never ran (in "before-commit" it was announced, then the child stopped).
    assert "stmt COMMIT" not in printed or pause == "COMMIT"

    s = Store(path)
    try:
        new_sess = sessions_between(dt.date.fromisoformat(NEW_START), dt.date(2040, 1, 1))[:n_sess]
        stored = s.stored_sessions()
        all_bars = frame_of(s.load_range(dt.date(2000, 1, 1), dt.date(2040, 1, 1)))
        is_old = all_bars["day"].isin((OLD_SESS - EPOCH_DAY).astype(np.int64))
        # Old sessions unchanged, bar for bar.
        assert_frames(all_bars[is_old].reset_index(drop=True), before)
        new_rows = int((~is_old).sum())
        # All or nothing; the commit never ran, so nothing: no session, no bar, same version.
        np.testing.assert_array_equal(stored, OLD_SESS)
        assert new_rows == 0
        assert s.version == v0
        assert not np.isin(new_sess, stored).any()
        counts = s.fetchall(
            "SELECT s.rows, count(b.sid) FROM sessions s LEFT JOIN bars b ON b.date = s.date "
            "GROUP BY s.date, s.rows")
        assert len(counts) == len(stored)
        assert all(r == c for r, c in counts)
        # The store is usable after the crash.
        extra = make_bars(CRASH_SYMS[:10], new_sess[:1], seed=6)
        assert s.append_sessions(extra, new_sess[:1], report_for(extra)) == 10
        assert new_sess[0] in s.stored_sessions()
    finally:
        s.close()


def test_replacing_bars_one_for_one_moves_version_and_content(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS, seed=1)
    store.append_sessions(b, SESS, report_for(b))
    v, digest, counts = store.version, store.content(), store.status()
    # A split re-fetch of two symbols: the same bars (count, dates), new prices.
    redo = b.take(np.flatnonzero(np.isin(b.symbol, ["AAA", "BBB"])))
    adjusted = BarBatch(redo.symbol, redo.date, *(getattr(redo, f) / 2 for f in FIELDS[:4]),
                        redo.volume * 2)
    first, last = SESS[0].astype(dt.date), SESS[-1].astype(dt.date)
    assert store.replace_symbols(adjusted, ["AAA", "BBB"], first, last) == len(redo)
    after = store.status()
    assert {k: after[k] for k in ("bars", "symbols", "sessions")} == {
        k: counts[k] for k in ("bars", "symbols", "sessions")}
    assert store.version == v + 1
    assert store.content() != digest
    # Putting the old bars back restores the digest: it names the content, not the history.
    store.replace_symbols(redo, ["AAA", "BBB"], first, last)
    assert store.content() == digest


def test_service_data_version_moves_on_a_one_for_one_replacement(tmp_path: Path) -> None:
    from technic_v4.service.cache import DataVersion
    from technic_v4.testing import make_market

    md = make_market(tmp_path, n=40)
    md.ensure_current()
    dv = DataVersion(md)
    before = dv.current()
    sess = md.store.stored_sessions()
    first, last = sess[0].astype(dt.date), sess[-1].astype(dt.date)
    b = md.store.sessions_batch(first, last)
    sym = str(b.symbol[0])
    mine = b.take(np.flatnonzero(b.symbol == sym))
    halved = BarBatch(mine.symbol, mine.date, *(getattr(mine, f) / 2 for f in FIELDS[:4]),
                      mine.volume)
    md.store.replace_symbols(halved, [sym], first, last)
    assert dv.current() != before
    md.close()


def test_store_id_is_created_with_the_store_and_kept(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    sid = s.store_id
    assert sid is not None and len(sid) == 32
    s.upsert_reference(make_ref(SYMS))
    s.close()
    assert Store(tmp_path / "a.duckdb").store_id == sid
    assert Store(tmp_path / "b.duckdb").store_id != sid


def test_reading_pins_one_connection_for_several_reads(store: Store) -> None:
    store.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS)
    store.append_sessions(b, SESS, report_for(b))
    with store.reading():  # one pinned read-only connection: every read sees one version
        v = store.version
        assert len(store.load_range(SESS[0].astype(dt.date), SESS[-1].astype(dt.date))[
            "sid"]) == len(b)
        assert store.version == v
