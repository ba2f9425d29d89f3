"""Fixtures of the notify tests: a real HTTP receiver on loopback, and the setting that lets
alerts reach it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from notify_support import Receiver

from technic_v4.config import settings as settings_mod


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        with r.lock:
            for script in r.scripts.values():
                for a in script:
                    if a.hold is not None:
                        a.hold.set()
        r.server.shutdown()
        r.server.server_close()
        r.thread.join(10)


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback receivers are private addresses: let alerts reach them (as the setting does)."""
    monkeypatch.setenv("TECHNIC_ALERTS_ALLOW_PRIVATE", "true")
    settings_mod.reset_settings()
