"""Support for the service tests (imported by name; a conftest module cannot be, since every
test folder has one): the real app served by uvicorn on a loopback port."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from technic_v4.data.calendar import sessions_between
from technic_v4.data.providers.synthetic import SyntheticProvider
from technic_v4.service.app import Service
from technic_v4.testing import free_port


class ServerThread:
    """uvicorn serving ``app`` in a thread. The listening socket is bound and listening before
    the thread starts, so requests made right away queue in its backlog: no readiness poll."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(2048)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@dataclass
class Running:
    server: ServerThread
    client: httpx.Client
    service: Service

    @property
    def url(self) -> str:
        return self.server.url

    def scan(self, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        """Submit and wait (long poll) for the end; returns the final status."""
        r = self.client.post("/v1/scan", json=body, headers=headers)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        return self.wait(job_id, **headers)

    def wait(self, job_id: str, **headers: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/scan/{job_id}", params={"wait": 30}, headers=headers)
        assert r.status_code == 200, r.text
        st = r.json()
        assert st["state"] in ("done", "failed", "cancelled"), st
        return st


class Gate:
    """A progress hook that holds a scan inside its first progress callback until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, str, int, int]] = []

    def __call__(self, job_id: str, stage: str, done: int, total: int) -> None:
        self.calls.append((job_id, stage, done, total))
        self.entered.set()
        if not self.release.wait(60):
            raise TimeoutError("gate never released")

    def wait_entered(self) -> None:
        assert self.entered.wait(30), "the scan never reached its first progress callback"


class BacktestGate(Gate):
    """A progress hook that holds each progress callback of a backtest (never a scan's) until
    ``release`` is set; ``entered`` tells that one arrived, ``steps`` lists them. (A Gate: the
    ``serve`` fixture releases it at teardown.)"""

    def __init__(self) -> None:
        super().__init__()
        self.running: Running | None = None
        self.steps: list[str] = []

    def __call__(self, job_id: str, stage: str, done: int, total: int) -> None:
        assert self.running is not None
        if self.running.service.backtests.get(job_id) is None:
            return  # a scan passes
        self.steps.append(stage)
        self.entered.set()
        assert self.release.wait(60), "gate never released"


Serve = Callable[..., Running]


class AdvancingProvider(SyntheticProvider):
    """The synthetic market whose latest session moves forward when told (a new session
    closing at the vendor while a service runs)."""

    def advance(self, end: dt.date) -> None:
        self.end = end
        self.sessions = sessions_between(self.epoch, end)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's chromium at /usr/bin/chromium "
                                    "(apt-get install -y chromium)")
