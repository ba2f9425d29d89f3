"""`technic screens|watchlists|alerts|watch` as a user runs them: real processes, one state
store in a tmp data dir; errors are one line naming the field, exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from technic_v4.daily.state import StateStore


def _technic(args: list[str], data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TECHNIC_DATA_DIR": str(data), "TECHNIC_SYNTHETIC_LISTINGS": "150",
           "TECHNIC_SYNTHETIC_EPOCH": "2025-06-02", "TECHNIC_SYNTHETIC_END": "2026-11-20",
           "TECHNIC_PROGRESS": "false", "TECHNIC_ALERTS_ALLOW_PRIVATE": "true"}
    return subprocess.run([sys.executable, "-m", "technic_v4.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_saved_things_round_trip_and_secrets_are_never_shown(tmp_path: Path) -> None:
    r = _technic(["alerts", "add", "hook", "--kind", "webhook", "--url",
                  "http://hooks.example/hook", "--secret", "s3cr3t-value"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "s3cr3t-value" not in r.stdout and '"secret": "set"' in r.stdout
    r = _technic(["screens", "add", "dips", "--where", "RSI14 < 40", "--top", "10",
                  "--target", "hook"], tmp_path)
    assert r.returncode == 0, r.stderr
    r = _technic(["screens", "list"], tmp_path)
    assert "dips  (enabled; never run; targets: hook)" in r.stdout
    assert "golden_cross_today  (Golden cross today)" in r.stdout  # presets still listed
    show = json.loads(_technic(["screens", "show", "dips"], tmp_path).stdout)
    assert show["config"] == {"where": "RSI14 < 40", "top_n": 10}
    # User data: clearing the market store leaves the saved screens alone.
    assert _technic(["cache", "clear", "--store"], tmp_path).returncode == 0
    assert "dips  (enabled" in _technic(["screens", "list"], tmp_path).stdout
    r = _technic(["screens", "run", "dips", "--format", "csv"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("\"Symbol\",\"Name\"")
    assert 1 <= len(r.stdout.strip().splitlines()) - 1 <= 10
    r = _technic(["watchlists", "add", "core", "aaa:10:9:100", "BBB", "--target", "hook"],
                 tmp_path)
    assert r.returncode == 0, r.stderr
    w = json.loads(_technic(["watchlists", "show", "core"], tmp_path).stdout)
    assert [(i["symbol"], i.get("stop")) for i in w["items"]] == [("AAA", 9.0), ("BBB", None)]
    r = _technic(["alerts", "list"], tmp_path)
    assert "s3cr3t-value" not in r.stdout and "dead letters: 0" in r.stdout
    assert "s3cr3t-value" in StateStore(tmp_path).target("hook")["secret"]  # stored, not shown
    assert _technic(["screens", "remove", "dips"], tmp_path).returncode == 0
    assert _technic(["watchlists", "remove", "core"], tmp_path).returncode == 0
    assert _technic(["alerts", "remove", "hook"], tmp_path).returncode == 0
    assert "dips" not in _technic(["screens", "list"], tmp_path).stdout


def test_bad_input_is_one_line_naming_the_field(tmp_path: Path) -> None:
    assert _error(_technic(["screens", "add", "x", "--where", "close > smaa(5)"], tmp_path)) \
        .startswith("Error: where: unknown function `smaa`")
    assert _error(_technic(["screens", "add", "Bad Name", "--where", "close > 1"], tmp_path)) \
        .startswith("Error: name: 'Bad Name' is not a valid name")
    assert _error(_technic(["screens", "add", "x", "--where", "close > 1", "--target", "nope"],
                           tmp_path)).startswith("Error: targets: no alert target named 'nope'")
    assert _error(_technic(["screens", "remove", "ghost"], tmp_path)) == \
        "Error: screen: no saved screen named 'ghost'"
    assert _error(_technic(["screens", "run", "ghost"], tmp_path)).startswith(
        "Error: screen: no saved screen named 'ghost'")
    assert _error(_technic(["watchlists", "show", "ghost"], tmp_path)).startswith(
        "Error: watchlist: no watchlist named 'ghost'")
    assert _error(_technic(["watchlists", "add", "w", "AAA:x"], tmp_path)) == \
        "Error: items.AAA.entry: 'x' is not a number"
    assert _error(_technic(["alerts", "test", "ghost"], tmp_path)).startswith(
        "Error: target: no alert target named 'ghost'")
    # the preset path of `screens show` keeps its error
    assert "unknown preset 'golden'; did you mean" in _technic(["screens", "show", "golden"],
                                                                 tmp_path).stderr


def test_watch_runs_in_the_foreground_and_ctrl_c_exits(tmp_path: Path) -> None:
    import signal
    import time

    env = {**os.environ, "TECHNIC_DATA_DIR": str(tmp_path), "TECHNIC_SYNTHETIC_LISTINGS": "150",
           "TECHNIC_SYNTHETIC_EPOCH": "2025-06-02", "TECHNIC_SYNTHETIC_END": "2026-11-20",
           "TECHNIC_PROGRESS": "false"}
    StateStore(tmp_path).put_screen("up", {"where": "close > sma(close, 5)"}, True, [])
    with subprocess.Popen([sys.executable, "-m", "technic_v4.cli", "watch"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as p:
        try:
            assert p.stderr is not None
            assert "Ctrl-C exits" in p.stderr.readline()
            # The first tick catches up: once it stored the run, interrupt the sleep.
            st = StateStore(tmp_path)
            while not st.runs("up"):
                assert p.poll() is None, p.stderr.read()
                time.sleep(0.05)  # a poll, not a timing assertion
            p.send_signal(signal.SIGINT)
            assert p.wait(timeout=120) == 0
        finally:
            if p.poll() is None:
                p.kill()
    assert [str(r.session) for r in st.runs("up")] == ["2026-11-20"]
