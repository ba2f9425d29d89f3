"""The daily run: one shared evaluation equals separate scans; entered/left/changed against the
previous session's run; watchlist levels; the outbox sends exactly once, also across a kill -9."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from daily_support import Receiver, Recorder

from technic_v4 import pipeline
from technic_v4.config.scan import ScanConfig
from technic_v4.daily.run import evaluate_screens, flush, run_session
from technic_v4.daily.state import StateStore
from technic_v4.data.market import MarketData
from technic_v4.notify import Delivery, Message
from technic_v4.testing import make_market

END = dt.date(2026, 11, 20)
PREV = dt.date(2026, 11, 19)
EPOCH = dt.date(2025, 6, 2)
WHERE = "close > sma(close, 5)"  # changes from day to day


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = make_market(tmp_path_factory.mktemp("daily"), n=200, end=END, epoch=EPOCH)
    m.ensure_current()
    yield m
    m.close()


def test_screens_evaluated_together_equal_separate_scans(md: MarketData) -> None:
    configs = {
        "a": ScanConfig(where="close > sma(close, 50) and RSI14 < 70"),
        "b": ScanConfig(where="close > sma(close, 50)", top_n=5, sort_by="RSI14"),
        "c": ScanConfig(preset="golden_cross_today"),
        "d": ScanConfig(lookback_days=120, min_history=60, where="rsi(close, 2) < 50"),
        "e": ScanConfig(min_tech_rating=50),
    }
    md.clear_memory()
    with md.request() as counters:
        got = evaluate_screens(configs, md, END)
    # one panel per width (300 and 120 bars here: the second is served from the first)
    assert counters.served["store"] <= 300 * 200
    for name, cfg in configs.items():
        want = pipeline.scan(cfg.model_copy(update={"as_of_date": END}), md).frame
        frame = got[name]
        assert isinstance(frame, pd.DataFrame)
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), want.reset_index(drop=True))


def test_screens_with_equal_options_share_their_terms(md: MarketData) -> None:
    shared = "highest(high, 20)"
    configs = {f"s{i}": ScanConfig(where=f"close > 0.9 * {shared} and RSI14 > {10 * i}")
               for i in range(4)}
    configs["other"] = ScanConfig(where=f"close < {shared}", min_tech_rating=30)  # output only
    configs["apart"] = ScanConfig(where=f"close < {shared}", min_price=5)  # pre-screen differs
    stats: dict[str, object] = {}
    evaluate_screens(configs, md, END, stats)
    assert stats["groups"] == 2
    computed = stats["computed"]
    assert isinstance(computed, Counter)
    assert computed["highest(high,20)"] == 2  # once per group, not once per screen
    assert max(computed.values()) <= 2


def _symbols(md: MarketData, day: dt.date) -> dict[str, str]:
    f = pipeline.scan(ScanConfig(where=WHERE, as_of_date=day), md).frame
    return dict(zip(f["Symbol"], f["Signal"], strict=True))


def test_changes_since_the_previous_session_and_one_outbox_row_per_target(
        md: MarketData, tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    for t in ("t1", "t2"):
        st.put_target({"name": t, "kind": "webhook", "url": "http://127.0.0.1:9/"})
    st.put_screen("up", {"where": WHERE}, True, ["t1", "t2"])
    st.put_screen("off", {"where": WHERE}, False, ["t1"])
    rec = Recorder()
    rep = run_session(PREV, state=st, data=md, send=rec, update=False)
    assert rep.ran == ["up"]
    rep = run_session(END, state=st, data=md, send=rec, update=False,
                      link="https://technic.example/")
    assert rep.ran == ["up"] and rep.sent == 2
    before, after = _symbols(md, PREV), _symbols(md, END)
    run = st.run("up", END)
    assert run is not None
    ch = run.changes
    assert {r["Symbol"] for r in ch["entered"]} == set(after) - set(before)
    assert {r["Symbol"] for r in ch["left"]} == set(before) - set(after)
    assert {(c["Symbol"], c["From"], c["To"]) for c in ch["changed"]} == {
        (s, before[s], after[s]) for s in set(before) & set(after) if before[s] != after[s]}
    assert ch["entered"] or ch["left"]  # the test means something
    msgs = [m for _, m in rec.calls if m.session == END]
    assert sorted(t for t, m in rec.calls if m.session == END) == ["t1", "t2"]
    assert msgs[0].entered == ch["entered"] and msgs[0].screen == "up"
    assert msgs[0].link == "https://technic.example/#screen=up"
    # A second run of the session neither recomputes nor sends.
    n = len(rec.calls)
    rep = run_session(END, state=st, data=md, send=rec, update=False)
    assert rep.ran == [] and rep.skipped == ["up"] and len(rec.calls) == n


def test_first_run_compares_with_a_computed_previous_session(md: MarketData,
                                                              tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    st.put_screen("up", {"where": WHERE}, True, [])
    run_session(END, state=st, data=md, send=Recorder(), update=False)
    run = st.run("up", END)
    assert run is not None and st.run("up", PREV) is None  # the baseline is not stored
    assert {r["Symbol"] for r in run.changes["entered"]} == \
        set(_symbols(md, END)) - set(_symbols(md, PREV))


def test_failed_delivery_is_dead_with_its_error_and_others_are_sent(md: MarketData,
                                                                    tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    st.put_target({"name": "good", "kind": "webhook", "url": "http://x/"})
    st.put_target({"name": "bad", "kind": "webhook", "url": "http://y/"})
    st.put_screen("up", {"where": WHERE}, True, ["good", "bad"])

    def send(target: dict[str, object], m: Message) -> Delivery:
        if target["name"] == "bad":
            return Delivery("bad", False, 3, "HTTP 500 after 3 attempts\n(details)", 500)
        return Delivery("good", True, 1)

    rep = run_session(END, state=st, data=md, send=send, update=False)
    assert (rep.sent, rep.dead) == (1, 1)
    rows = {o.target: o for o in st.outbox()}
    assert rows["good"].status == "sent" and rows["good"].sent_at is not None
    assert rows["bad"].status == "dead" and rows["bad"].attempts == 3
    assert rows["bad"].last_error == "HTTP 500 after 3 attempts (details)"
    assert flush(st, send) == (0, 0)  # dead rows are not retried by later runs


def test_watchlist_levels_touched_by_the_sessions_bar(md: MarketData, tmp_path: Path) -> None:
    p = md.symbols_panel([0, 1, 2], END, 1)
    syms = [str(s) for s in p.symbols]
    low, high = p.low[:, -1], p.high[:, -1]
    st = StateStore(tmp_path)
    st.put_target({"name": "t", "kind": "webhook", "url": "http://x/"})
    st.put_watchlist("mine", [
        {"symbol": syms[0], "stop": float(low[0]) + 0.01},  # stop touched
        {"symbol": syms[1], "stop": float(low[1]) / 2, "target": float(high[1]) - 0.01},
        {"symbol": syms[2], "stop": float(low[2]) / 2, "target": float(high[2]) * 2},  # neither
    ], ["t"])
    rec = Recorder()
    run_session(END, state=st, data=md, send=rec, update=False)
    [(target, msg)] = rec.calls
    assert target == "t" and msg.screen == "watchlist:mine"
    assert [(h["Symbol"], h["Level"]) for h in msg.touched] == [(syms[0], "stop"),
                                                                (syms[1], "target")]


CHILD = textwrap.dedent("""
    import datetime as dt, os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from daily_support import webhook_send
    from technic_v4.daily.run import run_session
    calls = [0]
    kill_at = int(os.environ.get("KILL_AT_SEND", "-1"))
    def send(target, message):
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # after the runs are stored, before this send
        calls[0] += 1
        return webhook_send(target, message)
    rep = run_session(dt.date.fromisoformat(sys.argv[2]), send=send)
    print(rep.as_dict())
""")


@pytest.mark.parametrize("kill_at", [0, 1])
def test_kill_9_after_storing_resumes_without_a_duplicate(tmp_path: Path, kill_at: int) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TECHNIC_DATA_DIR": str(tmp_path / "data"),
           "TECHNIC_SYNTHETIC_LISTINGS": "200", "TECHNIC_SYNTHETIC_EPOCH": str(EPOCH),
           "TECHNIC_SYNTHETIC_END": str(END), "TECHNIC_PROGRESS": "false"}
    here = str(Path(__file__).parent)
    with Receiver() as rx:
        st = StateStore(tmp_path / "data")
        st.put_target({"name": "hook", "kind": "webhook", "url": rx.url})
        st.put_screen("a", {"where": WHERE}, True, ["hook"])
        st.put_screen("b", {"where": "close < sma(close, 5)"}, True, ["hook"])
        first = subprocess.run([sys.executable, str(script), here, str(END)],
                               env={**env, "KILL_AT_SEND": str(kill_at)}, capture_output=True,
                               text=True, timeout=300)
        assert first.returncode == -signal.SIGKILL, first.stderr
        assert len(rx.bodies) == kill_at
        assert {r.name for r in st.runs()} == {"a", "b"}  # stored before the kill
        second = subprocess.run([sys.executable, str(script), here, str(END)], env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert "'ran': []" in second.stdout  # nothing recomputed
        assert sorted(b["screen"] for b in rx.bodies) == ["a", "b"]  # each exactly once
        assert {o.status for o in st.outbox()} == {"sent"}


def test_a_screen_edited_since_its_last_run_compares_with_its_new_expression(
        md: MarketData, tmp_path: Path) -> None:
    st = StateStore(tmp_path)
    st.put_screen("s", {"where": "close < sma(close, 5)"}, True, [])
    run_session(PREV, state=st, data=md, send=Recorder(), update=False)
    st.put_screen("s", {"where": WHERE}, True, [], replace=True)  # edited between sessions
    run_session(END, state=st, data=md, send=Recorder(), update=False)
    run = st.run("s", END)
    assert run is not None
    # What entered is what the screen as saved now finds that it did not find the day before,
    # not everything the old, opposite expression did not find.
    assert {r["Symbol"] for r in run.changes["entered"]} == \
        set(_symbols(md, END)) - set(_symbols(md, PREV))
    assert {r["Symbol"] for r in run.changes["left"]} == \
        set(_symbols(md, PREV)) - set(_symbols(md, END))
