"""The daily run with the real senders (technic_v4.notify.send): a webhook target that answers
500 once and then recovers gets the message once; `technic alerts test` sends a sample.
(Skipped until the senders are installed beside the runner.)"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daily_support import Receiver

from technic_v4.config import settings as settings_mod
from technic_v4.daily.run import run_session
from technic_v4.daily.state import StateStore
from technic_v4.data.market import MarketData
from technic_v4.testing import make_market

pytest.importorskip("technic_v4.notify.send")

END = dt.date(2026, 11, 20)
EPOCH = dt.date(2025, 6, 2)


@pytest.fixture(scope="module")
def md(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketData]:
    m = make_market(tmp_path_factory.mktemp("notify"), n=200, end=END, epoch=EPOCH)
    m.ensure_current()
    yield m
    m.close()


def test_a_target_that_fails_once_then_recovers_gets_one_message(
        md: MarketData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHNIC_ALERTS_ALLOW_PRIVATE", "true")
    settings_mod.reset_settings()
    with Receiver(fail=1) as rx:
        st = StateStore(tmp_path)
        st.put_target({"name": "hook", "kind": "webhook", "url": rx.url, "secret": "k3y"})
        st.put_screen("up", {"where": "close > sma(close, 5)"}, True, ["hook"])
        rep = run_session(END, state=st, data=md, update=False)
        assert (rep.sent, rep.dead) == (1, 0)
        [row] = st.outbox()
        assert row.status == "sent" and row.attempts == 2
        assert [b["screen"] for b in rx.bodies] == ["up"]
        run_session(END, state=st, data=md, update=False)
        assert len(rx.bodies) == 1  # exactly once


def test_alerts_test_sends_a_sample(tmp_path: Path) -> None:
    with Receiver() as rx:
        env = {**os.environ, "TECHNIC_DATA_DIR": str(tmp_path),
               "TECHNIC_ALERTS_ALLOW_PRIVATE": "true"}
        StateStore(tmp_path).put_target({"name": "hook", "kind": "webhook", "url": rx.url})
        r = subprocess.run([sys.executable, "-m", "technic_v4.cli", "alerts", "test", "hook"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert len(rx.bodies) == 1 and rx.bodies[0]["test"] is True
