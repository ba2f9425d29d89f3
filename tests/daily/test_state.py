"""The state store: its own DuckDB file, migrations on open, validation, all-or-nothing runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from technic_v4.daily import state as state_mod
from technic_v4.daily.state import StateStore
from technic_v4.errors import ConfigError

D1 = dt.date(2026, 11, 19)


def test_new_store_has_every_migration_and_reopens(tmp_path: Path) -> None:
    s = StateStore(tmp_path)
    assert s.path == tmp_path / "technic-state.duckdb"
    assert s.schema_version() == len(state_mod.MIGRATIONS)
    s.put_target({"name": "hook", "kind": "webhook", "url": "http://x/"})
    assert StateStore(tmp_path).target("hook")["url"] == "http://x/"


def test_a_new_migration_is_applied_on_open_in_order(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    StateStore(tmp_path).put_screen("a", {"where": "close > 1"}, True, [])
    extra = "ALTER TABLE screens ADD COLUMN note VARCHAR DEFAULT 'n';"
    monkeypatch.setattr(state_mod, "MIGRATIONS", [*state_mod.MIGRATIONS, extra])
    s = StateStore(tmp_path)
    assert s.schema_version() == len(state_mod.MIGRATIONS)
    with duckdb.connect(str(s.path), read_only=True) as con:
        assert con.execute("SELECT name, note FROM screens").fetchall() == [("a", "n")]


def test_a_newer_store_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    StateStore(tmp_path)
    monkeypatch.setattr(state_mod, "MIGRATIONS", [])
    with pytest.raises(Exception, match="newer than this technic"):
        StateStore(tmp_path)


def test_names_and_unknown_things_fail_naming_the_field(tmp_path: Path) -> None:
    s = StateStore(tmp_path)
    with pytest.raises(ConfigError, match=r"^name: 'My Screen' is not a valid name"):
        s.put_screen("My Screen", {}, True, [])
    with pytest.raises(ConfigError, match=r"^screen: no saved screen named 'nope'"):
        s.screen("nope")
    with pytest.raises(ConfigError, match=r"^watchlist: no watchlist named 'nope'"):
        s.watchlist("nope")
    with pytest.raises(ConfigError, match=r"^target: no alert target named 'nope'"):
        s.target("nope")
    with pytest.raises(ConfigError, match=r"^targets: no alert target named 'ghost'"):
        s.put_screen("a", {}, True, ["ghost"])
    s.put_screen("a", {}, True, [])
    with pytest.raises(ConfigError, match="a screen named 'a' exists"):
        s.put_screen("a", {}, True, [])


def test_a_target_in_use_cannot_be_removed(tmp_path: Path) -> None:
    s = StateStore(tmp_path)
    s.put_target({"name": "t", "kind": "webhook", "url": "http://x/"})
    s.put_screen("a", {}, True, ["t"])
    with pytest.raises(ConfigError, match="used by a"):
        s.remove_target("t")
    s.remove_screen("a")
    s.remove_target("t")
    assert s.targets() == []


def test_store_run_is_once_per_name_and_session_with_its_outbox(tmp_path: Path) -> None:
    s = StateStore(tmp_path)
    now = dt.datetime(2026, 11, 19, 22)
    rows = [{"Symbol": "AAA", "Signal": "Long"}]
    rid = s.store_run("a", D1, now, False, rows, {"entered": rows},
                      [("t1", {"screen": "a"}), ("t2", {"screen": "a"})])
    assert rid is not None
    assert s.store_run("a", D1, now, False, [], {}, [("t1", {})]) is None  # nothing written
    assert [(o.run_id, o.target, o.status) for o in s.outbox()] == [
        (rid, "t1", "pending"), (rid, "t2", "pending")]
    run = s.run("a", D1)
    assert run is not None and run.rows == rows and run.changes["entered"] == rows


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    s = StateStore(tmp_path)
    now = dt.datetime(2026, 11, 19, 22)
    with pytest.raises(TypeError):  # the payload cannot be written: the run is not either
        s.store_run("a", D1, now, False, [], {}, [("t1", {"bad": object()})])
    assert s.run("a", D1) is None and s.outbox() == []
