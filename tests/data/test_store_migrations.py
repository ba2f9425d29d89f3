"""Store layout: schema versions, the migration from split-adjusted bars, actions, delistings."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from tests.data.test_store import SESS, SYMS, make_bars, make_ref, report_for

from technic_v4.data.store import SCHEMA_VERSION, Store
from technic_v4.errors import StoreError

# The layout of stores written before 2026-11-29 (bars split-adjusted, no actions, no delistings).
LAYOUT_1 = """
CREATE TABLE symbols (sid INTEGER PRIMARY KEY, symbol VARCHAR UNIQUE NOT NULL, name VARCHAR,
    type VARCHAR, exchange VARCHAR, sector VARCHAR, industry VARCHAR, shares_outstanding DOUBLE,
    list_date DATE);
CREATE TABLE bars (sid INTEGER NOT NULL, date DATE NOT NULL, open DOUBLE NOT NULL,
    high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE NOT NULL);
CREATE TABLE sessions (date DATE PRIMARY KEY, rows INTEGER, ingested_at TIMESTAMP);
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE ingest_log (logged_at TIMESTAMP, first_session DATE, last_session DATE,
    n_sessions INTEGER, rows_in BIGINT, rows_kept BIGINT, dropped VARCHAR);
INSERT INTO symbols VALUES (0, 'AAA', 'A Inc.', 'Common Stock', 'NYSE', 'Energy', 'Oil', 1e6,
    DATE '2010-05-04');
INSERT INTO bars VALUES (0, DATE '2025-03-03', 1, 2, 0.5, 1.5, 100);
INSERT INTO sessions VALUES (DATE '2025-03-03', 1, now());
INSERT INTO meta VALUES ('version', '7'), ('store_id', 'old'),
    ('adjusted_through', '2025-03-03');
"""


def layout_1(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(LAYOUT_1)
    con.close()


def test_a_new_store_has_the_current_layout(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert s.actions().empty and list(s.reference().columns)[-2:] == ["Delisted",
                                                                       "DelistReason"]


def test_a_layout_1_store_is_emptied_with_a_warning_and_a_new_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.duckdb"
    layout_1(path)
    with caplog.at_level(logging.WARNING):
        s = Store(path)
    assert "split-adjusted bars (layout 1); it was emptied" in caplog.text
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert s.store_id not in (None, "old") and s.get_meta("adjusted_through") is None
    assert s.fetchall("SELECT count(*) FROM bars") == [(0,)] and s.last_session() is None
    assert s.reference().empty
    # The migrated store works like a new one.
    s.upsert_reference(make_ref(SYMS))
    b = make_bars(SYMS, SESS)
    assert s.append_sessions(b, SESS, report_for(b)) == len(b)
    again = Store(path)  # opened again: nothing to migrate, nothing lost
    assert again.fetchall("SELECT count(*) FROM bars") == [(len(b),)]


def test_a_store_from_a_newer_technic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    s = Store(path)
    s.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer technic"):
        Store(path)


def test_an_interrupted_migration_leaves_the_old_store(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from technic_v4.data import store as store_mod

    path = tmp_path / "old.duckdb"
    layout_1(path)

    def boom(con: duckdb.DuckDBPyConnection, p: Path) -> None:
        con.execute("DROP TABLE bars")
        raise KeyboardInterrupt

    monkeypatch.setitem(store_mod.MIGRATIONS, 2, boom)
    with pytest.raises(KeyboardInterrupt):
        Store(path)
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM bars").fetchall() == [(1,)]
        assert con.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchall() == [
            ("old",)]
    finally:
        con.close()


def actions_frame(rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["Symbol", "ExDate", "Type", "Ratio", "Amount"])


def test_actions_round_trip_and_bad_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    s.upsert_reference(make_ref(SYMS))
    v0 = s.version
    counts = s.upsert_actions(actions_frame([
        ("AAA", "2025-03-05", "split", 4.0, np.nan),
        ("BBB", "2025-03-06", "split", 0.1, np.nan),  # 1-for-10 reverse
        ("AAA", "2025-03-10", "Dividend", np.nan, 0.25),
        ("ZZZ", "2025-03-10", "dividend", np.nan, 0.25),  # unknown symbol
        ("CCC", "2025-03-10", "spinoff", 1.0, np.nan),  # unknown type
        ("CCC", "2025-03-11", "split", 0.0, np.nan),  # not a positive ratio
        ("CCC", "2025-03-11", "dividend", np.nan, np.inf),  # not a finite amount
        ("DDD", "not a date", "split", 2.0, np.nan),
    ]))
    assert counts == {"stored": 3, "unknown_symbol": 1, "unknown_type": 1, "bad_value": 2,
                      "missing_ex_date": 1}
    assert s.version == v0 + 1
    got = s.actions()
    assert list(got.columns) == ["sid", "Symbol", "ExDate", "Type", "Ratio", "Amount"]
    assert got[["Symbol", "Type"]].values.tolist() == [["AAA", "split"], ["AAA", "dividend"],
                                                         ["BBB", "split"]]
    assert got["ExDate"].dtype == np.dtype("datetime64[s]") or \
        str(got["ExDate"].dtype).startswith("datetime64")
    assert got["Ratio"].tolist()[::2] == [4.0, 0.1]
    assert got["Amount"].tolist()[1] == 0.25
    # A vendor's correction replaces the action; the digest of the store moves with it.
    digest = s.content()
    s.upsert_actions(actions_frame([("AAA", "2025-03-10", "dividend", np.nan, 0.26)]))
    assert s.actions()["Amount"].tolist()[1] == 0.26 and len(s.actions()) == 3
    assert s.content() != digest
    # Nothing valid: nothing written, the version stays.
    v = s.version
    assert s.upsert_actions(actions_frame([("ZZZ", "2025-03-10", "split", 2.0, np.nan)])) == {
        "stored": 0, "unknown_symbol": 1}
    assert s.version == v


def test_delisted_listings_keep_their_last_session_and_reason(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    ref = make_ref(SYMS)
    ref["Delisted"] = pd.to_datetime([None, "2025-03-07", None, "2025-03-12"])
    ref["DelistReason"] = [None, "bankrupt", None, "acquired"]
    s.upsert_reference(ref)
    got = s.reference().set_index("Symbol")
    assert got.loc["BBB", "Delisted"] == pd.Timestamp("2025-03-07")
    assert got.loc["DDD", "DelistReason"] == "acquired"
    assert pd.isna(got.loc["AAA", "Delisted"]) and pd.isna(got.loc["AAA", "DelistReason"])
    # A provider that does not know delistings leaves the columns empty.
    s.upsert_reference(make_ref(["EEE"]))
    assert pd.isna(s.reference().set_index("Symbol").loc["EEE", "Delisted"])
    assert dt.date(2025, 3, 7) == got.loc["BBB", "Delisted"].date()
